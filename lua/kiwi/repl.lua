--- kiwi.repl: the interactive shell over a kiwi db (`kiwi repl`, `make run`).
--
--     kiwi> put "user 1" "Alice Smith"
--     OK
--     kiwi> scan
--     key     value
--     user 1  Alice Smith
--     (1 entry)
--
-- Words split on whitespace; "double quotes" and 'single quotes' group words, and the escapes
-- \" \' \\ \n \t \r \0 \e \xHH and "\ " work outside single quotes (an lpeg grammar: `split`).
-- `help` lists the commands. `lua <code>` runs Lua with `db` in scope; `:lua` switches to Lua
-- mode until `:kiwi`. An error prints and the session goes on.
--
-- Layers: `split` and `execute(session, line)` are free of I/O (specs drive them with strings);
-- `run` loads the configuration (kiwi.config), starts the logs (kiwi.log), opens the db and
-- drives a session from a terminal (kiwi.lineedit on a raw tty, on the luv loop: line editing,
-- history in <data>/.kiwi_history, tab completion, Ctrl-C cancels the line, Ctrl-D leaves) or
-- from piped input (plain lines, no prompt).
--
-- This file owns the session: splitting a line, dispatching it, Lua mode, opening the db and
-- `run`. The commands and how they show their results are kiwi.repl_commands; the two input
-- drivers, the history file and completion are kiwi.repl_input. Their public parts are
-- re-exported here (repl.show, repl.table, repl.command_names, repl.complete).
-- @module kiwi.repl

local kiwi = require("kiwi")
local lpeg = require("lpeg")
local log = require("kiwi.log")
local commands = require("kiwi.repl_commands")
local input_drivers = require("kiwi.repl_input")

local byte = string.byte
local char = string.char
local concat = table.concat
local format = string.format
local gsub = string.gsub
local ipairs = ipairs
local math_type = math.type
local pairs = pairs
local pcall = pcall
local sort = table.sort
local tonumber = tonumber
local tostring = tostring
local type = type

local M = {}

M.PROMPT = "kiwi> "
M.LUA_PROMPT = "lua> "
M.MORE_PROMPT = "...> "
-- copies of the values kiwi.repl_commands and kiwi.repl_input read (their own fields)
M.DEFAULT_SCAN_LIMIT = commands.DEFAULT_SCAN_LIMIT
M.CELL_WIDTH = commands.CELL_WIDTH -- longer cells in tables are cut with "..."
M.HISTORY_FILE = input_drivers.HISTORY_FILE
M.HISTORY_KEEP = input_drivers.HISTORY_KEEP

-- ---- word splitting (lpeg) ----------------------------------------------------------------------

local P, S, R, C, Cs, Ct, Cp, Cmt = lpeg.P, lpeg.S, lpeg.R, lpeg.C, lpeg.Cs, lpeg.Ct, lpeg.Cp, lpeg.Cmt

local PARSE_ERROR = {}

local function raise(col, msg)
  error({ [PARSE_ERROR] = true, msg = format("%s at column %d", msg, col) }, 0)
end

local grammar
do
  local ws = S(" \t\r\n")
  local hex = R("09", "af", "AF")
  local ESC = { n = "\n", t = "\t", r = "\r", ["0"] = "\0", e = "\27", ['"'] = '"', ["'"] = "'",
    ["\\"] = "\\", [" "] = " " }
  -- each alternative captures the whole escape, backslash included, so Cs replaces all of it
  local good_escape = (P("\\x") * C(hex * hex)) / function(h)
    return char(tonumber(h, 16))
  end + (P("\\") * C(S("ntr0e\"'\\ "))) / ESC
  local bad_escape = Cmt(Cp() * P("\\") * C(P(1) ^ -1), function(_, _, col, c)
    if c == "" then
      raise(col, "backslash at the end of the line")
    elseif c == "x" then
      raise(col, "\\x needs two hex digits")
    end
    raise(col, "unknown escape \\" .. c)
  end)
  local escape = good_escape + bad_escape
  local dq_body = (escape + (1 - S('"\\'))) ^ 0
  local dquoted = (P('"') / "") * dq_body * (P('"') / "")
  local sq_body = (1 - P("'")) ^ 0
  local squoted = (P("'") / "") * sq_body * (P("'") / "")
  local open_quote = Cmt(Cp() * (P('"') * dq_body + P("'") * sq_body) * P(-1), function(_, _, col)
    raise(col, "unterminated quote opened")
  end)
  local bare = (escape + (1 - (ws + S("\"'\\")))) ^ 1
  local word = Cs((dquoted + squoted + open_quote + bare) ^ 1)
  grammar = ws ^ 0 * Ct((word * ws ^ 0) ^ 0) * P(-1)
end

--- Splits a command line into words.
-- @tparam string line
-- @treturn table|nil the words, or nil and a message naming the column of the problem
function M.split(line)
  local ok, words = pcall(lpeg.match, grammar, line)
  if not ok then
    if type(words) == "table" and words[PARSE_ERROR] then
      return nil, words.msg
    end
    error(words, 0)
  end
  return words
end

-- ---- showing bytes and tables, the commands: kiwi.repl_commands ---------------------------------

M.show = commands.show
M.table = commands.table
M.command_names = commands.command_names

local fail, show = commands.fail, commands.show

-- ---- Lua escape ---------------------------------------------------------------------------------

--- Formats a Lua value for `lua` results: tables one level deep, strings quoted.
function M.inspect(v, depth)
  depth = depth or 0
  if type(v) == "string" then
    local QUOTE = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t" }
    return '"' .. gsub(v, '[%c"\\\128-\255]', function(c)
      return QUOTE[c] or format("\\x%02x", byte(c))
    end) .. '"'
  elseif type(v) ~= "table" or depth > 2 then
    return tostring(v)
  end
  local keys = {}
  for k in pairs(v) do
    keys[#keys + 1] = k
  end
  sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == "number" or type(a) == "string") then
      return a < b
    end
    return type(a) < type(b)
  end)
  local parts = {}
  for _, k in ipairs(keys) do
    local ks = ""
    if not (math_type(k) == "integer" and k >= 1 and k <= #v) then
      local name = type(k) == "string" and k:match("^[%a_][%w_]*$")
      ks = name and (k .. " = ") or ("[" .. M.inspect(k, 3) .. "] = ")
    end
    parts[#parts + 1] = ks .. M.inspect(v[k], depth + 1)
    if #parts >= 50 then
      parts[#parts + 1] = "..."
      break
    end
  end
  return "{ " .. concat(parts, ", ") .. " }"
end

local function lua_env(session)
  if session.env then
    return session.env
  end
  local env = setmetatable({}, { __index = _G })
  env.db, env.kiwi, env.cfg = session.db, kiwi, session.cfg
  env.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do
      parts[i] = tostring((select(i, ...)))
    end
    session.printed[#session.printed + 1] = concat(parts, "\t")
  end
  session.env = env
  return env
end

-- Runs a chunk of Lua; returns the text to print. `incomplete` is true when the chunk ends early
-- (Lua mode then asks for more lines).
local function run_lua(session, code)
  local env = lua_env(session)
  local fn = load("return " .. code, "=lua", "t", env)
  local err
  if not fn then
    fn, err = load(code, "=lua", "t", env)
    if not fn then
      return fail(err), err:find("<eof>", 1, true) ~= nil
    end
  end
  session.printed = {}
  local res = table.pack(pcall(fn))
  local out = session.printed
  if not res[1] then
    out[#out + 1] = fail(res[2])
  else
    for i = 2, res.n do
      out[#out + 1] = M.inspect(res[i])
    end
  end
  return #out > 0 and concat(out, "\n") or nil
end

-- ---- sessions -----------------------------------------------------------------------------------

--- A session: the state one shell keeps (db, configuration, Lua mode).
-- @param db an open kiwi.db
-- @tparam[opt] table opts `cfg` (a kiwi.config), `apply_lua` (function(name, value) applying a
--   Lua setting live)
function M.session(db, opts)
  opts = opts or {}
  return { db = db, cfg = opts.cfg, apply_lua = opts.apply_lua, mode = "kiwi", pending = nil,
    log = log.new("repl") }
end

local sessions = setmetatable({}, { __mode = "k" })

--- The prompt the session wants next.
function M.prompt(session)
  if session.mode == "lua" then
    return session.pending and M.MORE_PROMPT or M.LUA_PROMPT
  end
  return M.PROMPT
end

local function execute_lua_mode(session, line)
  if line:match("^%s*:kiwi%s*$") or line:match("^%s*:q%s*$") then
    session.mode, session.pending = "kiwi", nil
    return nil, true
  end
  local code = session.pending and (session.pending .. "\n" .. line) or line
  if code:match("^%s*$") then
    return nil, true
  end
  local out, incomplete = run_lua(session, code)
  if incomplete then
    session.pending = code
    return nil, true
  end
  session.pending = nil
  return out, true
end

--- Executes one line.
-- @param session from M.session (a db is accepted too and gets a session of its own)
-- @tparam string line
-- @treturn string|nil the text to print (nil: nothing)
-- @treturn boolean false when the session should end (exit, quit)
function M.execute(session, line)
  if type(session) ~= "table" then
    sessions[session] = sessions[session] or M.session(session)
    session = sessions[session]
  end
  if session.mode == "lua" then
    return execute_lua_mode(session, line)
  end
  local code = line:match("^%s*lua%s+(.*)$")
  if code then
    return (run_lua(session, code)), true
  elseif line:match("^%s*lua%s*$") then
    return fail("usage: lua <code>"), true
  elseif line:match("^%s*:lua%s*$") then
    session.mode = "lua"
    return "Lua mode: db, kiwi and cfg are in scope; :kiwi returns", true
  end
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
  local cmd = commands.find(name)
  if not cmd then
    return fail("unknown command '" .. show(name) .. "' (try help)"), true
  end
  local args = { table.unpack(words, 2) }
  if #args < cmd.min or #args > cmd.max then
    return commands.usage(cmd), true
  end
  session.log:debug("repl_command", { command = name })
  local ok, out = pcall(cmd.fn, session, args)
  if not ok then
    return fail(out), true
  end
  return out, true
end

-- ---- running: configuration, logs, db -----------------------------------------------------------

local polled = setmetatable({}, { __mode = "k" }) -- dbs whose events come from db:poll_events()

-- Applies a Lua setting live (kiwi.config calls it for `config set log_*`).
local function apply_log_setting(name, v)
  if name == "log_level" then
    return log.update({ level = v })
  elseif name == "log_file_max_mb" then
    return log.update({ file_max_bytes = math.floor(v * 1024 * 1024) })
  elseif name == "log_files_keep" then
    return log.update({ files_keep = v })
  elseif name == "log_to_stderr" then
    return log.update({ to_stderr = v })
  elseif name == "log_to_file" then
    return log.update({ to_file = v })
  end
  return nil, "cannot change live"
end

M.apply_setting = apply_log_setting

--- Loads the configuration, starts the logs and opens the db (validate everything first).
-- @tparam table opts `data`, `mode`, `config` (file), `getenv`
-- @return db, cfg, events ("on_event", "poll_events" or nil: how engine events arrive), or
--   nil, msg, code
function M.open(opts)
  local config = require("kiwi.config")
  local cfg, msg, code = config.load({ data = opts.data, mode = opts.mode, file = opts.config,
    getenv = opts.getenv })
  if not cfg then
    return nil, msg, code
  end
  local uv = require("luv")
  if not uv.fs_stat(cfg.data) then
    local ok, err = uv.fs_mkdir(cfg.data, tonumber("755", 8))
    if not ok then
      return nil, format("io error: %s: cannot create the data directory: %s", cfg.data, tostring(err)),
        "io error"
    end
  end
  -- a new db keeps its mode: recorded in its own config.json (not in a file given with --config)
  local fresh = not opts.config and not uv.fs_stat(cfg.data .. "/CURRENT")
  local lok, lerr = log.configure(cfg:log_options())
  if not lok then
    return nil, "invalid argument: logs: " .. tostring(lerr), "invalid argument"
  end
  local db, events
  -- The event bridge: kiwi.open(path, { on_event = fn }) where the binding has it (the callback
  -- runs on the luv loop thread); otherwise db:poll_events() where that exists; otherwise none.
  db, msg, code = cfg:open({ on_event = log.engine_event })
  if db then
    events = "on_event"
  elseif code == "invalid argument" and tostring(msg):find("on_event", 1, true) then
    db, msg, code = cfg:open()
    events = db and db.poll_events and "poll_events" or nil
    if events then
      polled[db] = true
    end
  end
  if not db then
    log.new("repl"):error("open_failed", { data = cfg.data, message = msg })
    log.close()
    return nil, msg, code
  end
  if fresh then
    local ok, err = cfg:record_mode()
    if not ok then
      log.new("repl"):warn("config_not_written", { message = err })
    end
  end
  log.new("repl"):info("open", { data = cfg.data, mode = cfg.mode, events = events or "none",
    log_port = log.port() })
  return db, cfg, events
end

-- Delivers queued engine events when the binding has db:poll_events() and no callback.
local function poll_events(db)
  if not polled[db] then
    return
  end
  local ok, list = pcall(db.poll_events, db)
  if ok and type(list) == "table" then
    for _, e in ipairs(list) do
      log.engine_event(e.level or e[1], e.event or e[2], e.fields or e[3])
    end
  end
end

-- ---- input: a terminal or plain lines (kiwi.repl_input) -----------------------------------------

M.complete = input_drivers.complete

--- Runs the shell until exit or end of input, then closes the db and the logs.
-- @tparam table opts `data` (default "./data"), `mode`, `config` (file), `input`, `output`
--   (files; default io.stdin / io.stdout), `interactive` (boolean: use the terminal driver; by
--   default when stdin is a terminal), `getenv`
-- @treturn boolean|nil true, or nil, msg, code if the db could not be opened or closed cleanly
function M.run(opts)
  opts = opts or {}
  local uv = require("luv")
  local input, output = opts.input or io.stdin, opts.output or io.stdout
  local interactive = opts.interactive
  if interactive == nil then
    interactive = input == io.stdin and output == io.stdout and uv.guess_handle(0) == "tty"
      and uv.guess_handle(1) == "tty"
  end
  local db, cfg, events = M.open(opts)
  if not db then
    return nil, cfg, events
  end
  local session = M.session(db, { cfg = cfg, apply_lua = apply_log_setting })
  local timer
  if events == "poll_events" then
    timer = uv.new_timer()
    timer:start(250, 250, function() poll_events(db) end)
  end
  if interactive then
    output:write(format("kiwi %s on %s (%s mode); help lists the commands, Ctrl-D leaves\n",
      kiwi.version, cfg.data, cfg.mode))
    input_drivers.run_tty(M, session, output, cfg.data, poll_events, function()
      if timer and not timer:is_closing() then
        timer:close()
      end
    end)
    local ok, err = pcall(uv.run, "default")
    uv.tty_reset_mode()
    if not ok then
      output:write("\nkiwi: ", tostring(err), "\n")
    end
  else
    input_drivers.run_plain(M, session, input, output, poll_events, false)
    if timer then
      timer:close()
    end
  end
  local ok, msg, code = db:close()
  uv.run("nowait") -- the engine's last events (on_event) reach the log before it closes
  poll_events(db)
  log.new("repl"):info("close", { data = cfg.data, ok = ok and true or false, message = msg })
  log.close()
  uv.run("default") -- let every closed handle finish closing
  if not ok then
    return nil, msg, code
  end
  return true
end

return M
