--- kiwi.lineedit: a small line editor for the REPL on a raw terminal, driven by the luv loop.
--
--     local ed = lineedit.new({ write = function(s) io.stdout:write(s) end,
--                               on_line = function(line) ... end,   -- nil at Ctrl-D
--                               complete = function(before) return words, start end })
--     ed:start("kiwi> ")
--     ed:feed(bytes)                 -- what the terminal sent; calls write and on_line
--
-- The editor is sans-IO (like lit's http-codec): `feed` takes the bytes a terminal sends, `write`
-- receives the escape sequences that redraw the line, so specs drive it with plain strings.
-- `lineedit.attach(ed, tty)` connects it to a luv tty in raw mode.
--
-- Keys: printable text and UTF-8 insert; Enter accepts; Backspace, Delete, C-d (delete, or end
-- of input on an empty line); Left/Right, C-b/C-f, Home/End, C-a/C-e, Alt-b/Alt-f (words);
-- C-k, C-u, C-w kill to the end, to the start, the word before; Up/Down, C-p/C-n walk the
-- history; Tab completes (the common prefix; a second Tab lists the candidates); C-c drops the
-- line; C-l clears the screen. A line longer than the terminal scrolls sideways.
--
-- Why not GNU readline: Debian's lua-readline 3.2 (the Lua 5.4 binding) has a callback interface,
-- the only one that lets the luv loop run while a user types, but its handler_remove fcloses the
-- terminal stream and then calls rl_callback_handler_remove, which still uses it (a use after
-- free: "free(): invalid pointer" on Ctrl-C), a second remove fcloses it again ("double free"),
-- and every handler_install opens /dev/tty anew. Its blocking readline() would stop the loop
-- (log clients, engine events) while the prompt waits.
-- @module kiwi.lineedit

local byte = string.byte
local concat = table.concat
local format = string.format
local sub = string.sub

local M = {}

local Editor = {}
Editor.__index = Editor
Editor.__name = "kiwi.lineedit"

--- Creates an editor.
-- @tparam table opts `write(s)` (terminal output), `on_line(line)` (nil at end of input),
--   `complete(text_before_cursor)` -> candidates, start (byte index where the word begins),
--   `history` (a list of earlier lines, oldest first), `width` (terminal columns, default 80)
function M.new(opts)
  return setmetatable({
    write = opts.write, on_line = opts.on_line, complete = opts.complete,
    history = opts.history or {}, width = opts.width or 80,
    buf = "", pos = 0, prompt = "", hidx = nil, saved = nil, pending = "", tabs = 0, active = false,
  }, Editor)
end

-- Display columns of a UTF-8 string (one per code point; good enough for a prompt).
local function columns(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

--- Redraws the prompt and the line, scrolling sideways when it does not fit.
function Editor:redraw()
  local avail = self.width - columns(self.prompt) - 1
  local before, after = sub(self.buf, 1, self.pos), sub(self.buf, self.pos + 1)
  local shown_before, shown_after = before, after
  if avail > 8 and columns(before) + columns(after) > avail then
    while columns(shown_before) > avail - 1 do -- keep the cursor in view: drop from the left
      shown_before = "<" .. sub(shown_before, 3):gsub("^[\128-\191]+", "")
    end
    while columns(shown_before) + columns(shown_after) > avail do
      shown_after = sub(shown_after, 1, -2)
    end
  end
  local back = columns(shown_after)
  self.write("\r" .. self.prompt .. shown_before .. shown_after .. "\27[K"
    .. (back > 0 and format("\27[%dD", back) or ""))
end

--- Starts a new line with the given prompt.
function Editor:start(prompt)
  self.prompt = prompt or self.prompt
  self.buf, self.pos, self.hidx, self.saved, self.tabs = "", 0, nil, nil, 0
  self.active = true
  self:redraw()
end

local function char_before(s, pos)
  local i = pos
  while i > 1 and byte(s, i) >= 0x80 and byte(s, i) < 0xC0 do
    i = i - 1
  end
  return i -- the first byte of the code point ending at pos
end

local function char_after(s, pos)
  local i = pos + 2
  while i <= #s and byte(s, i) >= 0x80 and byte(s, i) < 0xC0 do
    i = i + 1
  end
  return i - 1 -- the last byte of the code point starting at pos + 1
end

function Editor:insert(text)
  self.buf = sub(self.buf, 1, self.pos) .. text .. sub(self.buf, self.pos + 1)
  self.pos = self.pos + #text
end

function Editor:backspace()
  if self.pos > 0 then
    local i = char_before(self.buf, self.pos)
    self.buf = sub(self.buf, 1, i - 1) .. sub(self.buf, self.pos + 1)
    self.pos = i - 1
  end
end

function Editor:delete()
  if self.pos < #self.buf then
    self.buf = sub(self.buf, 1, self.pos) .. sub(self.buf, char_after(self.buf, self.pos) + 1)
  end
end

function Editor:left()
  if self.pos > 0 then
    self.pos = char_before(self.buf, self.pos) - 1
  end
end

function Editor:right()
  if self.pos < #self.buf then
    self.pos = char_after(self.buf, self.pos)
  end
end

function Editor:word_left()
  local s = sub(self.buf, 1, self.pos)
  self.pos = (s:find("[^%s]*%s*$") or 1) - 1
end

function Editor:word_right()
  local _, e = self.buf:find("^%s*[^%s]*", self.pos + 1)
  self.pos = e or #self.buf
end

function Editor:kill_word()
  local s = sub(self.buf, 1, self.pos)
  local start = (s:find("[^%s]*%s*$") or 1) - 1
  self.buf = sub(self.buf, 1, start) .. sub(self.buf, self.pos + 1)
  self.pos = start
end

-- Moves through the history by `step` (-1 older, +1 newer); the line being typed is kept.
function Editor:walk(step)
  local h = self.history
  local idx = (self.hidx or #h + 1) + step
  if idx < 1 or idx > #h + 1 then
    return
  end
  if self.hidx == nil then
    self.saved = self.buf
  end
  self.hidx = idx
  self.buf = idx == #h + 1 and (self.saved or "") or h[idx]
  self.pos = #self.buf
  if idx == #h + 1 then
    self.hidx = nil
  end
end

local function common_prefix(list)
  local p = list[1]
  for i = 2, #list do
    local s = list[i]
    local n = 0
    while n < #p and n < #s and byte(p, n + 1) == byte(s, n + 1) do
      n = n + 1
    end
    p = sub(p, 1, n)
  end
  return p
end

function Editor:tab()
  if not self.complete then
    return
  end
  local before = sub(self.buf, 1, self.pos)
  local cands, start = self.complete(before)
  if not cands or #cands == 0 then
    return
  end
  local word = sub(before, start)
  if #cands == 1 then
    self:insert(sub(cands[1], #word + 1) .. " ")
    return
  end
  local prefix = common_prefix(cands)
  if #prefix > #word then
    self:insert(sub(prefix, #word + 1))
  elseif self.tabs >= 2 then -- the second Tab in a row: list them under the line
    self.write("\r\n" .. concat(cands, "  ") .. "\r\n")
  end
end

--- Accepts the line: a newline, then on_line(line). The caller starts the next line.
function Editor:accept()
  local line = self.buf
  self.active = false
  self.write("\r\n")
  if line ~= "" and line ~= self.history[#self.history] then
    self.history[#self.history + 1] = line
  end
  self.on_line(line)
end

--- Drops the line being typed (Ctrl-C) and starts a fresh one.
function Editor:cancel()
  self.write("^C\r\n")
  self:start()
end

local CONTROL = {
  [0x01] = function(e) e.pos = 0 end, -- C-a
  [0x02] = Editor.left, -- C-b
  [0x03] = function(e) e:cancel() return "started" end, -- C-c
  [0x04] = function(e) -- C-d: end of input on an empty line, else delete
    if e.buf == "" then
      e.active = false
      e.write("\r\n")
      e.on_line(nil)
      return "done"
    end
    e:delete()
  end,
  [0x05] = function(e) e.pos = #e.buf end, -- C-e
  [0x06] = Editor.right, -- C-f
  [0x08] = Editor.backspace, -- C-h
  [0x09] = Editor.tab,
  [0x0b] = function(e) e.buf = sub(e.buf, 1, e.pos) end, -- C-k
  [0x0c] = function(e) e.write("\27[H\27[2J") end, -- C-l
  [0x0e] = function(e) e:walk(1) end, -- C-n
  [0x10] = function(e) e:walk(-1) end, -- C-p
  [0x15] = function(e) -- C-u
    e.buf = sub(e.buf, e.pos + 1)
    e.pos = 0
  end,
  [0x17] = Editor.kill_word, -- C-w
  [0x7f] = Editor.backspace,
}

local ESCAPES = {
  ["[A"] = function(e) e:walk(-1) end, ["[B"] = function(e) e:walk(1) end,
  ["[C"] = Editor.right, ["[D"] = Editor.left,
  ["[H"] = function(e) e.pos = 0 end, ["[F"] = function(e) e.pos = #e.buf end,
  ["OH"] = function(e) e.pos = 0 end, ["OF"] = function(e) e.pos = #e.buf end,
  ["[1~"] = function(e) e.pos = 0 end, ["[7~"] = function(e) e.pos = 0 end,
  ["[4~"] = function(e) e.pos = #e.buf end, ["[8~"] = function(e) e.pos = #e.buf end,
  ["[3~"] = Editor.delete,
  ["b"] = Editor.word_left, ["f"] = Editor.word_right,
  ["[1;5D"] = Editor.word_left, ["[1;5C"] = Editor.word_right,
}

-- The length of the escape sequence at the start of s (after ESC), or nil if incomplete.
local function escape_length(s)
  local c = sub(s, 1, 1)
  if c == "" then
    return nil
  elseif c == "[" or c == "O" then
    local e = s:find("[%a~]", 2)
    return e
  end
  return 1 -- Alt-<key>
end

--- Feeds the bytes the terminal sent (any number of keys, a partial escape sequence kept).
function Editor:feed(data)
  local s = self.pending .. data
  self.pending = ""
  local i, n = 1, #s
  while i <= n do
    if not self.active then -- on_line has not started the next line yet: keep the rest
      self.pending = sub(s, i)
      return
    end
    local b = byte(s, i)
    local key_is_tab = b == 0x09
    self.tabs = key_is_tab and self.tabs + 1 or 0
    if b == 0x0d or b == 0x0a then
      if b == 0x0d and byte(s, i + 1) == 0x0a then
        i = i + 1
      end
      i = i + 1
      self:accept()
    elseif b == 0x1b then
      local len = escape_length(sub(s, i + 1))
      if not len then
        self.pending = sub(s, i)
        return
      end
      local f = ESCAPES[sub(s, i + 1, i + len)]
      if f then
        f(self)
      end
      i = i + 1 + len
      self:redraw()
    elseif b < 0x20 or b == 0x7f then
      local f = CONTROL[b]
      local r = f and f(self)
      i = i + 1
      if r ~= "done" and r ~= "started" then
        self:redraw()
      end
    else
      local j = i
      while j <= n and byte(s, j) >= 0x20 and byte(s, j) ~= 0x7f do
        j = j + 1
      end
      self:insert(sub(s, i, j - 1))
      i = j
      self:redraw()
    end
  end
end

--- Connects an editor to a luv tty (raw mode while attached).
-- @param ed an editor
-- @param tty a luv tty handle on stdin
-- @treturn function detach (restores the terminal mode; idempotent)
function M.attach(ed, tty)
  local uv = require("luv")
  local ok, width = pcall(function() return (tty:get_winsize()) end)
  if ok and type(width) == "number" and width > 0 then
    ed.width = width
  end
  tty:set_mode(1)
  tty:read_start(function(err, data)
    if err or data == nil then
      if ed.active then
        ed.active = false
        ed.on_line(nil)
      end
      return
    end
    ed:feed(data)
  end)
  local detached = false
  return function()
    if detached then
      return
    end
    detached = true
    if not tty:is_closing() then
      tty:read_stop()
    end
    uv.tty_reset_mode()
  end
end

M.Editor = Editor

return M
