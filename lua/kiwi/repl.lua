--- kiwi.repl: a first, minimal interactive shell over a kiwi db.
--
--     kiwi> put user:1 "Alice Smith"
--     OK
--     kiwi> get user:1
--     Alice Smith
--
-- Commands: put <key> <value>, get <key>, del <key>, scan [start] [end] [limit], flush, stats,
-- help, exit (EOF exits too). Arguments split on whitespace; "double quotes" group words and
-- accept the escapes \" \\ \n \t \xHH inside them. An error prints and the loop goes on.
--
-- The command logic (`split`, `execute`) is free of I/O, so specs drive it with plain strings;
-- `run` is the loop over an input and an output file.
-- @module kiwi.repl

local kiwi = require("kiwi")

local byte = string.byte
local char = string.char
local concat = table.concat
local format = string.format
local gsub = string.gsub
local io = io
local pairs = pairs
local pcall = pcall
local sort = table.sort
local sub = string.sub
local tonumber = tonumber
local tostring = tostring
local type = type
local unpack = table.unpack

local M = {}

M.PROMPT = "kiwi> "
M.DEFAULT_SCAN_LIMIT = 100

local ESCAPES = { n = "\n", t = "\t", r = "\r", ["0"] = "\0", ['"'] = '"', ["\\"] = "\\" }

--- Splits a command line into words.
-- Whitespace separates words; a "double-quoted" run is part of a word (so `""` is an empty word)
-- and may contain \" \\ \n \t \r \0 and \xHH.
-- @tparam string line
-- @treturn table|nil the words, or nil and an error message for an unterminated quote
function M.split(line)
  local words, cur, have = {}, {}, false
  local i, n = 1, #line
  while i <= n do
    local c = sub(line, i, i)
    if c == '"' then
      have = true
      i = i + 1
      while true do
        if i > n then
          return nil, "unterminated quote"
        end
        local q = sub(line, i, i)
        if q == '"' then
          break
        elseif q == "\\" and i < n then
          local e = sub(line, i + 1, i + 1)
          if e == "x" and sub(line, i + 2, i + 3):match("^%x%x$") then
            cur[#cur + 1] = char(tonumber(sub(line, i + 2, i + 3), 16))
            i = i + 4
          else
            cur[#cur + 1] = ESCAPES[e] or ("\\" .. e)
            i = i + 2
          end
        else
          cur[#cur + 1] = q
          i = i + 1
        end
      end
      i = i + 1
    elseif c:match("%s") then
      if have then
        words[#words + 1] = concat(cur)
        cur, have = {}, false
      end
      i = i + 1
    else
      cur[#cur + 1] = c
      have = true
      i = i + 1
    end
  end
  if have then
    words[#words + 1] = concat(cur)
  end
  return words
end

--- Shows bytes for a terminal: printable ASCII as is, a backslash as \\, others as \xHH.
-- @tparam string s
-- @treturn string
function M.show(s)
  s = gsub(s, "\\", "\\\\")
  return (gsub(s, "[^\32-\126]", function(c)
    return format("\\x%02x", byte(c))
  end))
end

local show = M.show

local HELP = [[
commands:
  put <key> <value>            store a value
  get <key>                    print the value, or (nil)
  del <key>                    delete a key
  scan [start] [end] [limit]   keys in [start, end) in order ("" = open end; limit default 100)
  flush                        write the memtables to SSTables
  stats                        engine counters
  help                         this text
  exit                         close the db and leave (EOF too)
quote words with "double quotes"; inside quotes \" \\ \n \t \xHH are escapes]]

local function fail(msg)
  return "error: " .. tostring(msg)
end

-- Flattens a nested table into sorted "a.b = v" lines.
local function flatten(t, prefix, out)
  for k, v in pairs(t) do
    local name = prefix and (prefix .. "." .. tostring(k)) or tostring(k)
    if type(v) == "table" then
      flatten(v, name, out)
    else
      out[#out + 1] = name .. " = " .. tostring(v)
    end
  end
  return out
end

local commands = {}

commands.put = function(db, args)
  if #args ~= 2 then
    return fail("usage: put <key> <value>")
  end
  local ok, msg = db:put(args[1], args[2])
  return ok and "OK" or fail(msg)
end

commands.get = function(db, args)
  if #args ~= 1 then
    return fail("usage: get <key>")
  end
  local v, msg = db:get(args[1])
  if v == nil then
    return msg and fail(msg) or "(nil)"
  end
  return show(v)
end

commands.del = function(db, args)
  if #args ~= 1 then
    return fail("usage: del <key>")
  end
  local ok, msg = db:delete(args[1])
  return ok and "OK" or fail(msg)
end
commands.delete = commands.del

commands.scan = function(db, args)
  if #args > 3 then
    return fail("usage: scan [start] [end] [limit]")
  end
  local start = args[1] ~= "" and args[1] or nil
  local stop = args[2] ~= "" and args[2] or nil
  local limit = M.DEFAULT_SCAN_LIMIT
  if args[3] then
    limit = tonumber(args[3])
    if not limit or limit < 0 or limit % 1 ~= 0 then
      return fail("limit must be a non-negative integer")
    end
  end
  local lines, n = {}, 0
  for k, v in db:scan(start, stop, { limit = limit + 1 }) do
    n = n + 1
    if n > limit then
      lines[#lines + 1] = format("(more; showing the first %d)", limit)
      return concat(lines, "\n")
    end
    lines[#lines + 1] = show(k) .. " = " .. show(v)
  end
  lines[#lines + 1] = format("(%d %s)", n, n == 1 and "entry" or "entries")
  return concat(lines, "\n")
end

commands.flush = function(db)
  local ok, msg = db:flush()
  return ok and "OK" or fail(msg)
end

commands.stats = function(db)
  local st, msg = db:stats()
  if not st then
    return fail(msg)
  end
  local lines = flatten(st, nil, {})
  sort(lines)
  return concat(lines, "\n")
end

commands.help = function()
  return HELP
end

--- Executes one command line against db.
-- @param db an open kiwi.db
-- @tparam string line
-- @treturn string|nil the text to print (nil for an empty line)
-- @treturn boolean false when the session should end (exit, quit)
function M.execute(db, line)
  local words, err = M.split(line)
  if not words then
    return fail(err), true
  end
  if #words == 0 then
    return nil, true
  end
  local name = words[1]
  if name == "exit" or name == "quit" then
    return nil, false
  end
  local cmd = commands[name]
  if not cmd then
    return fail("unknown command '" .. name .. "' (try help)"), true
  end
  local args = { unpack(words, 2) }
  local ok, out = pcall(cmd, db, args)
  if not ok then
    return fail(out), true
  end
  return out, true
end

--- Opens the db and runs the loop until exit or end of input, then closes the db.
-- @tparam table opts `data` (directory, default "./data"), `mode` ("dev" default), `input` and
--   `output` (files, default io.stdin/io.stdout), `prompt` (boolean: print prompts)
-- @treturn boolean|nil true, or nil, msg, code if the db could not be opened
function M.run(opts)
  opts = opts or {}
  local input = opts.input or io.stdin
  local output = opts.output or io.stdout
  local db <close>, msg, code = kiwi.open(opts.data or "./data", { mode = opts.mode or "dev" })
  if not db then
    return nil, msg, code
  end
  if opts.prompt then
    output:write(format("kiwi %s on %s (%s mode); type help\n", kiwi.version,
      opts.data or "./data", opts.mode or "dev"))
  end
  while true do
    if opts.prompt then
      output:write(M.PROMPT)
      output:flush()
    end
    local line = input:read("l")
    if line == nil then
      break
    end
    local out, continue = M.execute(db, line)
    if out then
      output:write(out, "\n")
      output:flush()
    end
    if not continue then
      break
    end
  end
  local ok, cmsg, ccode = db:close()
  if not ok then
    return nil, cmsg, ccode
  end
  return true
end

return M
