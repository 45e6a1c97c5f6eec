--- kiwi.repl_input: the REPL's two input drivers, and what the terminal one needs.
--
-- * `run_tty`: kiwi.lineedit on the stdin tty in raw mode, on the luv loop (log clients, timers
--   and engine events go on while the user types); the history file <data>/.kiwi_history (read
--   at start, trimmed to HISTORY_KEEP lines, appended to as lines are entered); tab completion
--   (`complete`); SIGTERM and SIGHUP leave like Ctrl-D; SIGWINCH redraws at the new width.
-- * `run_plain`: one line at a time from a file (a pipe, a redirect), no prompt, no editing.
--
-- Both take `repl`, the kiwi.repl module (its execute, prompt and complete: it requires this
-- module, so it is passed in), and `poll(db)`, which delivers queued engine events after a line.
-- @module kiwi.repl_input

local commands = require("kiwi.repl_commands")

local concat = table.concat
local ipairs = ipairs
local pairs = pairs
local pcall = pcall
local sort = table.sort
local type = type

local M = {}

M.HISTORY_FILE = ".kiwi_history"
M.HISTORY_KEEP = 1000

-- ---- history and completion ---------------------------------------------------------------------

local function history_path(data)
  return data .. "/" .. M.HISTORY_FILE
end

-- The last HISTORY_KEEP lines of the history file (the file is rewritten when longer).
local function load_history(path)
  local lines = {}
  local f = io.open(path, "r")
  if not f then
    return lines
  end
  for l in f:lines() do
    lines[#lines + 1] = l
  end
  f:close()
  if #lines > M.HISTORY_KEEP then
    lines = { table.unpack(lines, #lines - M.HISTORY_KEEP + 1) }
    local w = io.open(path, "w")
    if w then
      w:write(concat(lines, "\n"), "\n")
      w:close()
    end
  end
  return lines
end

--- Completion candidates for the text before the cursor: command names for the first word,
-- setting names after `config set`, command names after `help`.
-- @treturn table candidates
-- @treturn integer where the word being completed starts
function M.complete(before)
  local start = before:find("[^%s]*$")
  local prefix, word = before:sub(1, start - 1), before:sub(start)
  local pool
  if prefix:match("^%s*$") or prefix:match("^%s*help%s+$") then
    pool = commands.command_names()
  elseif prefix:match("^%s*config%s+$") then
    pool = { "set" }
  elseif prefix:match("^%s*config%s+set%s+$") then
    local config = require("kiwi.config")
    pool = {}
    for k in pairs(config.LUA_SETTINGS) do
      pool[#pool + 1] = k
    end
    for k in pairs(config.ENGINE_TYPES) do
      pool[#pool + 1] = k
    end
    sort(pool)
  else
    return {}, start
  end
  local out = {}
  for _, name in ipairs(pool) do
    if name:sub(1, #word) == word then
      out[#out + 1] = name
    end
  end
  return out, start
end

-- ---- the drivers --------------------------------------------------------------------------------

--- The terminal driver: kiwi.lineedit on the stdin tty in raw mode, so the luv loop (log clients,
-- timers, engine events) keeps running while the user types. Returns at once; the caller runs
-- the loop, and `on_done()` is called when the session ends (the loop is then stopped).
function M.run_tty(repl, session, output, data, poll, on_done)
  local uv = require("luv")
  local lineedit = require("kiwi.lineedit")
  local hist = history_path(data)
  local histf = io.open(hist, "a")
  if histf then
    histf:setvbuf("line")
  end
  local tty = uv.new_tty(0, true)
  local sigterm, sighup, sigwinch = uv.new_signal(), uv.new_signal(), uv.new_signal()
  local ed, detach
  local finished = false
  local history = load_history(hist)
  session.last_line = history[#history]

  local function finish()
    if finished then
      return
    end
    finished = true
    detach()
    for _, h in ipairs({ tty, sigterm, sighup, sigwinch }) do
      if not h:is_closing() then
        h:close()
      end
    end
    if histf then
      histf:close()
    end
    on_done()
    uv.stop() -- the log server's handles would keep the loop running
  end

  ed = lineedit.new({
    write = function(s)
      output:write(s)
      output:flush()
    end,
    complete = repl.complete,
    history = history,
    on_line = function(line)
      if line == nil then -- Ctrl-D on an empty line, or the terminal went away
        finish()
        return
      end
      if line:match("%S") and histf and line ~= session.last_line then
        histf:write(line, "\n") -- the file gets what the editor's history got
      end
      session.last_line = line
      local out, continue = repl.execute(session, line)
      if out then -- raw mode: the terminal wants \r\n
        output:write((out:gsub("\n", "\r\n")), "\r\n")
      end
      output:flush()
      poll(session.db)
      if not continue then
        finish()
        return
      end
      ed:start(repl.prompt(session))
    end,
  })
  detach = lineedit.attach(ed, tty)
  sigterm:start("sigterm", finish) -- closes the db cleanly, like Ctrl-D
  sighup:start("sighup", finish) -- the terminal went away
  sigwinch:start("sigwinch", function()
    local ok, w = pcall(function() return (tty:get_winsize()) end)
    if ok and type(w) == "number" and w > 0 then
      ed.width = w
      if ed.active then
        ed:redraw()
      end
    end
  end)
  ed:start(repl.prompt(session))
end

--- The plain driver: one line at a time from a file (a pipe, a redirect), no prompt (unless
-- `prompt`) and no editing; the luv loop runs between lines. Returns at the end of input or when
-- a line ends the session.
function M.run_plain(repl, session, input, output, poll, prompt)
  local uv = require("luv")
  while true do
    if prompt then
      output:write(repl.prompt(session))
      output:flush()
    end
    local line = input:read("l")
    if line == nil then
      break
    end
    local out, continue = repl.execute(session, line)
    if out then
      output:write(out, "\n")
      output:flush()
    end
    poll(session.db)
    uv.run("nowait")
    if not continue then
      break
    end
  end
end

return M
