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
-- @module kiwi.repl

local kiwi = require("kiwi")
local lpeg = require("lpeg")
local log = require("kiwi.log")

local byte = string.byte
local char = string.char
local concat = table.concat
local format = string.format
local gsub = string.gsub
local ipairs = ipairs
local math_type = math.type
local pairs = pairs
local pcall = pcall
local rep = string.rep
local sort = table.sort
local tonumber = tonumber
local tostring = tostring
local type = type

local M = {}

M.PROMPT = "kiwi> "
M.LUA_PROMPT = "lua> "
M.MORE_PROMPT = "...> "
M.DEFAULT_SCAN_LIMIT = 100
M.CELL_WIDTH = 60 -- longer cells in tables are cut with "..."
M.HISTORY_FILE = ".kiwi_history"
M.HISTORY_KEEP = 1000

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

-- ---- showing bytes and tables -------------------------------------------------------------------

--- Shows bytes for a terminal: printable ASCII as is, a backslash as \\, other bytes as \xHH.
function M.show(s)
  s = gsub(s, "\\", "\\\\")
  return (gsub(s, "[^\32-\126]", function(c)
    return format("\\x%02x", byte(c))
  end))
end

local show = M.show

local function cell(v)
  if v == nil then
    return ""
  elseif type(v) == "string" then
    local s = show(v)
    if #s > M.CELL_WIDTH then
      s = s:sub(1, M.CELL_WIDTH - 3) .. "..."
    end
    return s
  elseif math_type(v) == "float" then
    return format("%.6g", v)
  end
  return tostring(v)
end

--- Formats rows as an aligned table: two spaces between columns, numbers right-aligned.
-- @tparam table headers column names
-- @tparam table rows each an array of cells (strings, numbers, booleans or nil)
-- @treturn string
function M.table(headers, rows)
  local n = #headers
  local width, numeric, text = {}, {}, {}
  for j = 1, n do
    width[j], numeric[j] = #headers[j], #rows > 0
  end
  for i, row in ipairs(rows) do
    text[i] = {}
    for j = 1, n do
      local v = row[j]
      text[i][j] = cell(v)
      if v ~= nil and type(v) ~= "number" then
        numeric[j] = false
      end
      if #text[i][j] > width[j] then
        width[j] = #text[i][j]
      end
    end
  end
  local function line(cells)
    local parts = {}
    for j = 1, n do
      local c = cells[j]
      local pad = rep(" ", width[j] - #c)
      parts[j] = numeric[j] and (pad .. c) or (j < n and (c .. pad) or c)
    end
    return (concat(parts, "  "):gsub("%s+$", ""))
  end
  local out = { line(headers) }
  for i = 1, #rows do
    out[#out + 1] = line(text[i])
  end
  return concat(out, "\n")
end

local function plural(n, one, many)
  return format("%d %s", n, n == 1 and one or (many or one .. "s"))
end

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

-- ---- commands -----------------------------------------------------------------------------------

local function fail(msg)
  return "error: " .. tostring(msg)
end

local function usage(cmd)
  return fail("usage: " .. cmd.usage)
end

local function ok_or_fail(ok, msg)
  return ok and "OK" or fail(msg)
end

local function now_ms()
  return require("luv").hrtime() / 1e6
end

local function ms_since(t0)
  return math.floor((now_ms() - t0) * 100 + 0.5) / 100
end

local commands, order = {}, {}

local function command(name, usage_text, summary, fn, nargs_min, nargs_max)
  commands[name] = { name = name, usage = usage_text, summary = summary, fn = fn,
    min = nargs_min or 0, max = nargs_max or nargs_min or 0 }
  order[#order + 1] = name
end

command("put", "put <key> <value>", "store a value", function(s, a)
  return ok_or_fail(s.db:put(a[1], a[2]))
end, 2)

command("get", "get <key>", "print the value, or (nil)", function(s, a)
  local v, msg = s.db:get(a[1])
  if v == nil then
    return msg and fail(msg) or "(nil)"
  end
  return show(v)
end, 1)

command("del", "del <key>", "delete a key (a tombstone)", function(s, a)
  return ok_or_fail(s.db:delete(a[1]))
end, 1)

command("scan", "scan [start] [end] [limit]",
  'keys in [start, end) in order ("" = open end; limit default 100)', function(s, a)
  local start = a[1] ~= "" and a[1] or nil
  local stop = a[2] ~= "" and a[2] or nil
  local limit = M.DEFAULT_SCAN_LIMIT
  if a[3] then
    limit = math.tointeger(tonumber(a[3]))
    if not limit or limit < 0 then
      return fail("limit must be a non-negative integer, not '" .. a[3] .. "'")
    end
  end
  local rows = {}
  for k, v in s.db:scan(start, stop, { limit = limit + 1 }) do
    if #rows == limit then
      return M.table({ "key", "value" }, rows) .. format("\n(more; showing the first %d)", limit)
    end
    rows[#rows + 1] = { k, v }
  end
  if #rows == 0 then
    return "(0 entries)"
  end
  return M.table({ "key", "value" }, rows) .. "\n(" .. plural(#rows, "entry", "entries") .. ")"
end, 0, 3)

command("flush", "flush", "write the memtables to SSTables and wait", function(s)
  local t0 = now_ms()
  local ok, msg = s.db:flush()
  if not ok then
    return fail(msg)
  end
  s.log:info("repl_flush", { ms = ms_since(t0) })
  return "OK"
end)

command("compact", "compact", "compact the whole key range", function(s)
  local t0 = now_ms()
  local ok, msg = s.db:compact_range(nil, nil)
  if not ok then
    return fail(msg)
  end
  s.log:info("repl_compact", { ms = ms_since(t0) })
  return "OK"
end)

local function entries_table(entries)
  local rows = {}
  for i, e in ipairs(entries or {}) do
    rows[i] = { e.key, e.seq, e.type, e.value }
  end
  if #rows == 0 then
    return "(no entries)"
  end
  return M.table({ "key", "seq", "type", "value" }, rows)
end

local function parse_id(text)
  local id = math.tointeger(tonumber(text))
  if not id or id < 0 then
    return nil, fail("an id is a non-negative integer, not '" .. text .. "'")
  end
  return id
end

command("mem", "mem [id]", "list the memtables, or one memtable's entries", function(s, a)
  if a[1] then
    local id, err = parse_id(a[1])
    if not id then
      return err
    end
    local m = s.db:memtable(id)
    if not m then
      return fail(format("no memtable %d (mem lists them)", id))
    end
    local head = format("memtable %d (%s): %s, %s, %d bytes", m.id, tostring(m.state),
      plural(m.num_entries or 0, "entry", "entries"), plural(m.tombstones or 0, "tombstone"),
      m.bytes or 0)
    local body = entries_table(m.entries)
    if m.truncated then
      body = body .. "\n(truncated)"
    end
    return head .. "\n" .. body
  end
  local list, msg = s.db:memtables()
  if not list then
    return fail(msg)
  end
  local rows = {}
  for i, m in ipairs(list) do
    rows[i] = { m.id, m.state, m.num_entries, m.tombstones, m.bytes, m.user_bytes }
  end
  return M.table({ "id", "state", "entries", "tombstones", "bytes", "user_bytes" }, rows)
end, 0, 1)

command("disk", "disk [id]", "list the SSTables by level, or one SSTable's entries", function(s, a)
  if a[1] then
    local id, err = parse_id(a[1])
    if not id then
      return err
    end
    local t = s.db:sstable(id)
    if not t then
      return fail(format("no SSTable %d (disk lists them)", id))
    end
    local head = format("sstable %d (L%s, %d bytes, %s, %s, seq %s..%s) %s", t.id, tostring(t.level),
      t.size or 0, plural(t.num_entries or 0, "entry", "entries"), plural(t.tombstones or 0, "tombstone"),
      tostring(t.min_seq), tostring(t.max_seq), t.path or "")
    local body = entries_table(t.entries)
    if t.error then
      body = body .. "\n" .. fail(t.error)
    end
    if t.truncated then
      body = body .. "\n(truncated)"
    end
    return head .. "\n" .. body
  end
  local levels, msg = s.db:sstables()
  if not levels then
    return fail(msg)
  end
  local rows, summary = {}, {}
  for _, lv in ipairs(levels) do
    local files = lv.files or {}
    summary[#summary + 1] = format("L%d %d", lv.level, #files)
    for _, f in ipairs(files) do
      rows[#rows + 1] = { lv.level, f.id, f.size, f.num_entries, f.tombstones,
        format("%s..%s", tostring(f.min_seq), tostring(f.max_seq)), f.smallest, f.largest }
    end
  end
  local out = #rows > 0 and M.table({ "level", "id", "bytes", "entries", "tombstones", "seq",
    "smallest", "largest" }, rows) .. "\n" or ""
  return out .. "(" .. plural(#rows, "SSTable") .. "; " .. concat(summary, ", ") .. ")"
end, 0, 1)

command("stats", "stats", "engine counters", function(s)
  local st, msg = s.db:stats()
  if not st then
    return fail(msg)
  end
  local rows, levels = {}, nil
  for k, v in pairs(st) do
    if k == "levels" and type(v) == "table" then
      levels = v
    elseif type(v) ~= "table" then
      rows[#rows + 1] = { k, v }
    end
  end
  sort(rows, function(x, y) return x[1] < y[1] end)
  for _, r in ipairs(rows) do -- one value column: numbers and words alike left-aligned
    r[2] = cell(r[2])
  end
  local out = M.table({ "counter", "value" }, rows)
  if levels then
    local lrows = {}
    for i, lv in ipairs(levels) do
      lrows[i] = { lv.level, lv.files, lv.bytes }
    end
    out = out .. "\n\n" .. M.table({ "level", "files", "bytes" }, lrows)
  end
  local ls = log.stats()
  return out .. format("\n\nlog: %s, port %s, %s connected", log.file() or "(no file)",
    tostring(ls.port or "off"), plural(ls.clients, "client"))
end)

command("config", "config | config set <name> <value>", "show the settings, or change one live",
  function(s, a)
  if #a == 0 then
    if not s.cfg then
      local rows = {}
      for k, v in pairs(s.db:config() or {}) do
        rows[#rows + 1] = { k, cell(v) }
      end
      sort(rows, function(x, y) return x[1] < y[1] end)
      return M.table({ "setting", "value" }, rows)
    end
    local rows = {}
    for i, r in ipairs(s.cfg:rows(s.db)) do
      rows[i] = { r.name, cell(r.value), r.source, r.live == nil and "?" or (r.live and "yes" or "no") }
    end
    return M.table({ "setting", "value", "source", "live" }, rows)
  end
  if a[1] ~= "set" or #a ~= 3 then
    return fail("usage: config | config set <name> <value>")
  end
  local name, text = a[2], a[3]
  if not s.cfg then
    return ok_or_fail(s.db:update_config(name, text))
  end
  local v, msg = s.cfg:set(s.db, name, text, s.apply_lua)
  if v == nil then
    return fail(msg)
  end
  s.log:info("config_set", { setting = name, value = v })
  return format("OK: %s = %s (saved to %s)", name, cell(v), s.cfg.path)
end, 0, 3)

local function trace_row(i, st)
  local block = st.block and format("#%s @%s+%s", tostring(st.block.index), tostring(st.block.offset),
    tostring(st.block.size)) or nil
  local in_range = st.in_range
  if in_range ~= nil then
    in_range = in_range and "yes" or "no"
  end
  return { i, st.layer, st.level, st.id, in_range, st.bloom, block, st.cache, st.result }
end

command("trace", "trace <key>", "follow a lookup through every layer", function(s, a)
  local t, msg = s.db:trace(a[1])
  if not t then
    return fail(msg)
  end
  local rows = {}
  for i, st in ipairs(t.steps or {}) do
    rows[i] = trace_row(i, st)
  end
  local out = M.table({ "step", "layer", "level", "id", "in_range", "bloom", "block", "cache",
    "result" }, rows)
  local res = format("result: %s", tostring(t.result))
  if t.value ~= nil then
    res = res .. " = " .. show(t.value)
  end
  return out .. "\n" .. res .. format(" (at sequence %s)", tostring(t.sequence))
end, 1)

local HELP_TAIL = [[
  lua <code>                         run Lua with db in scope (an expression's value is printed)
  :lua                               switch to Lua mode (:kiwi switches back)
  help [command]                     this text
  exit                               close the db and leave (Ctrl-D too)
words split on spaces; "double" or 'single' quotes group them; escapes: \" \' \\ \n \t \r \0 \xHH]]

command("help", "help [command]", "this text", function(_, a)
  if a[1] then
    local c = commands[a[1]]
    if not c then
      return fail("unknown command '" .. a[1] .. "'")
    end
    return c.usage .. "\n  " .. c.summary
  end
  local lines = { "commands:" }
  for _, name in ipairs(order) do
    local c = commands[name]
    if name ~= "help" then
      lines[#lines + 1] = format("  %-34s %s", c.usage, c.summary)
    end
  end
  return concat(lines, "\n") .. "\n" .. HELP_TAIL
end, 0, 1)

--- The command names, for completion.
function M.command_names()
  local names = { "exit", "lua", ":lua" }
  for _, n in ipairs(order) do
    names[#names + 1] = n
  end
  sort(names)
  return names
end

-- ---- Lua escape ---------------------------------------------------------------------------------

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
  local cmd = commands[name]
  if not cmd then
    return fail("unknown command '" .. show(name) .. "' (try help)"), true
  end
  local args = { table.unpack(words, 2) }
  if #args < cmd.min or #args > cmd.max then
    return usage(cmd), true
  end
  session.log:debug("repl_command", { command = name })
  local ok, out = pcall(cmd.fn, session, args)
  if not ok then
    return fail(out), true
  end
  return out, true
end

-- ---- running: configuration, logs, db ----------------------------------------------------------

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

-- ---- input: a terminal through kiwi.lineedit, or plain lines -----------------------------------

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
    pool = M.command_names()
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

-- The terminal driver: kiwi.lineedit on the stdin tty in raw mode, so the luv loop (log clients,
-- timers, engine events) keeps running while the user types.
local function run_tty(session, output, data, on_done)
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
    complete = M.complete,
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
      local out, continue = M.execute(session, line)
      if out then -- raw mode: the terminal wants \r\n
        output:write((out:gsub("\n", "\r\n")), "\r\n")
      end
      output:flush()
      poll_events(session.db)
      if not continue then
        finish()
        return
      end
      ed:start(M.prompt(session))
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
  ed:start(M.prompt(session))
end

-- The plain driver: one line at a time from a file (a pipe, a redirect), no prompt and no
-- editing; the luv loop runs between lines.
local function run_plain(session, input, output, prompt)
  local uv = require("luv")
  while true do
    if prompt then
      output:write(M.prompt(session))
      output:flush()
    end
    local line = input:read("l")
    if line == nil then
      break
    end
    local out, continue = M.execute(session, line)
    if out then
      output:write(out, "\n")
      output:flush()
    end
    poll_events(session.db)
    uv.run("nowait")
    if not continue then
      break
    end
  end
end

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
    run_tty(session, output, cfg.data, function()
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
    run_plain(session, input, output, false)
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
