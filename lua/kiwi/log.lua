--- kiwi.log: structured logs (DESIGN §7): JSON lines to a rotated file and to TCP clients.
--
--     local log = require("kiwi.log")
--     assert(log.configure({ dir = "./data/logs", level = "info", port = 0 }))
--     local L = log.new("repl")
--     L:info("flush", { ms = 3.2, bytes = 4096 })
--     --> {"ts":"2025-01-02T03:04:05.678Z","level":"info","logger":"repl","event":"flush",
--          "bytes":4096,"ms":3.2}                                   (one line)
--
-- * One line per event: `ts` (UTC, milliseconds), `level`, `logger`, `event`, then the fields in
--   key order. Strings are escaped the way the engine escapes its JSON: every byte outside
--   printable ASCII becomes \u00XX, so a binary key round-trips and every line is valid JSON.
-- * Named loggers come from a registry (`log.new(name)` returns the same logger for a name); a
--   logger's level is its own (`L:set_level`) or the global one (`log.configure{level=}`), and it
--   is checked before anything is formatted.
-- * Outputs (sinks): `<dir>/kiwi.log` with size-based rotation (kiwi.log.1 is the newest old
--   file, up to `files_keep`), stderr (pretty, optional), and a TCP broadcast server on
--   127.0.0.1 that writes every line to every client. Port 0 binds any free port; the bound
--   port is written to `<dir>/kiwi.port` so `kiwi logs` can find it. A client whose unsent data
--   exceeds `client_queue_limit` bytes is dropped: a slow reader never slows the engine.
-- * `configure` validates everything first and applies nothing on an error.
--
-- The module is process-wide state by nature (one log file, one port), like Lua's io.stdout:
-- one configuration at a time, `log.close()` releases it.
-- @module kiwi.log

local uv = require("luv")

local byte = string.byte
local concat = table.concat
local date = os.date
local find = string.find
local format = string.format
local gsub = string.gsub
local ipairs = ipairs
local math_type = math.type
local pairs = pairs
local sort = table.sort
local tostring = tostring
local type = type

local M = {}

M.LEVELS = { debug = 10, info = 20, warn = 30, error = 40 }
M.LEVEL_NAMES = { "debug", "info", "warn", "error" }
M.DEFAULT_CLIENT_QUEUE_LIMIT = 1024 * 1024
M.FILE_NAME = "kiwi.log"
M.PORT_FILE = "kiwi.port"

local LEVELS = M.LEVELS

-- ---- JSON encoding ------------------------------------------------------------------------------

local function escape_byte(c)
  local b = byte(c)
  if c == '"' then
    return '\\"'
  elseif c == "\\" then
    return "\\\\"
  elseif c == "\n" then
    return "\\n"
  elseif c == "\t" then
    return "\\t"
  end
  return format("\\u%04x", b)
end

--- A JSON string literal for s: printable ASCII as is, every other byte as \u00XX.
-- @tparam string s
-- @treturn string
function M.json_string(s)
  if not find(s, '[%c"\\\128-\255]') then -- the common case: nothing to escape
    return '"' .. s .. '"'
  end
  return '"' .. gsub(s, '[%c"\\\128-\255]', escape_byte) .. '"'
end

local json_string = M.json_string

local encode

local function encode_number(v)
  if math_type(v) == "integer" then
    return tostring(v)
  end
  if v ~= v or v == math.huge or v == -math.huge then
    return "null"
  end
  if v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
    return format("%d", v)
  end
  return format("%.14g", v)
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    keys[#keys + 1] = tostring(k)
  end
  sort(keys)
  return keys
end

local function encode_table(t, depth)
  if depth > 8 then
    return '"(nested too deep)"'
  end
  local n = #t
  if n > 0 or next(t) == nil then
    local parts = {}
    for i = 1, n do
      parts[i] = encode(t[i], depth + 1)
    end
    return "[" .. concat(parts, ",") .. "]"
  end
  local parts = {}
  for _, k in ipairs(sorted_keys(t)) do
    local v = t[k]
    if v == nil then
      v = t[tonumber(k)]
    end
    parts[#parts + 1] = json_string(k) .. ":" .. encode(v, depth + 1)
  end
  return "{" .. concat(parts, ",") .. "}"
end

encode = function(v, depth)
  local t = type(v)
  if t == "string" then
    return json_string(v)
  elseif t == "number" then
    return encode_number(v)
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "table" then
    return encode_table(v, depth or 0)
  elseif v == nil then
    return "null"
  end
  return json_string(tostring(v))
end

--- Encodes a Lua value as JSON (sorted object keys, escaped bytes; functions as their name).
M.encode = function(v)
  return encode(v, 0)
end

local last_sec, last_prefix = nil, nil -- os.date is the dearest part of a line: once a second

--- The current time as an ISO 8601 UTC timestamp with milliseconds.
function M.timestamp()
  local sec, usec = uv.gettimeofday()
  if sec ~= last_sec then
    last_sec, last_prefix = sec, date("!%Y-%m-%dT%H:%M:%S", sec)
  end
  return last_prefix .. format(".%03dZ", usec // 1000)
end

local RESERVED = { ts = true, level = true, logger = true, event = true }

--- Formats one log line (with its trailing newline).
-- @tparam string level
-- @tparam string logger
-- @tparam string event
-- @tparam[opt] table fields (keys ts, level, logger, event are renamed with a leading "_")
-- @treturn string
function M.format_line(level, logger, event, fields)
  local parts = {
    '{"ts":"', M.timestamp(), '","level":"', level, '","logger":', json_string(logger),
    ',"event":', json_string(event),
  }
  if fields then
    for _, k in ipairs(sorted_keys(fields)) do
      local v = fields[k]
      if v == nil then
        v = fields[tonumber(k)]
      end
      parts[#parts + 1] = "," .. json_string(RESERVED[k] and "_" .. k or k) .. ":" .. encode(v, 1)
    end
  end
  parts[#parts + 1] = "}\n"
  return concat(parts)
end

-- ---- state --------------------------------------------------------------------------------------

local state = {
  level = LEVELS.info, -- the global threshold
  dir = nil,
  file = nil, -- { handle, path, size, max_bytes, keep }
  stderr = false,
  server = nil, -- { tcp, port, clients = {tcp=true}, limit }
  dropped = 0, -- clients dropped for being slow
  lines = 0, -- lines written
}

local loggers = {}

-- ---- the file sink ------------------------------------------------------------------------------

local function file_path(n)
  local base = state.dir .. "/" .. M.FILE_NAME
  return n == 0 and base or (base .. "." .. n)
end

local function open_file()
  local path = file_path(0)
  local f, err = io.open(path, "ab")
  if not f then
    return nil, "cannot open log file " .. tostring(err)
  end
  f:setvbuf("no") -- one write(2) per line: visible to `tail -f`, nothing lost in a buffer
  state.file.handle = f
  state.file.size = f:seek("end") or 0
  return true
end

--- Rotates the log file now: kiwi.log -> kiwi.log.1 -> ... -> kiwi.log.<keep>; older removed.
function M.rotate()
  local fs = state.file
  if not fs or not fs.handle then
    return
  end
  fs.handle:close()
  fs.handle = nil
  local keep = fs.keep
  -- files beyond `keep` (left from a larger setting) go first
  local n = keep + 1
  while uv.fs_stat(file_path(n)) do
    uv.fs_unlink(file_path(n))
    n = n + 1
  end
  if keep == 0 then
    uv.fs_unlink(file_path(0))
  else
    for i = keep - 1, 1, -1 do
      if uv.fs_stat(file_path(i)) then
        uv.fs_rename(file_path(i), file_path(i + 1))
      end
    end
    uv.fs_rename(file_path(0), file_path(1))
  end
  local ok, err = open_file()
  if not ok then
    io.stderr:write("kiwi.log: ", err, "\n")
  end
end

local function write_file(line)
  local fs = state.file
  if not fs.handle then
    return
  end
  if fs.size > 0 and fs.size + #line > fs.max_bytes then
    M.rotate()
    if not fs.handle then
      return
    end
  end
  fs.handle:write(line)
  fs.size = fs.size + #line
end

-- ---- the TCP broadcast sink ---------------------------------------------------------------------

local function close_handle(h)
  if not h:is_closing() then
    h:close()
  end
end

local function drop_client(c)
  local srv = state.server
  if srv and srv.clients[c] then
    srv.clients[c] = nil
    close_handle(c)
  end
end

local function broadcast(line)
  local srv = state.server
  local slow
  for c in pairs(srv.clients) do
    if uv.stream_get_write_queue_size(c) > srv.limit then
      slow = slow or {}
      slow[#slow + 1] = c
    else
      c:write(line, function(err)
        if err then
          drop_client(c)
        end
      end)
    end
  end
  if slow then
    for _, c in ipairs(slow) do
      drop_client(c)
      state.dropped = state.dropped + 1
    end
    -- said after the sweep, so the warning itself is not sent to the client being dropped
    M.new("log"):warn("log_client_dropped", { clients = M.clients(),
      reason = "unsent data above client_queue_limit", limit = srv.limit })
  end
end

local function on_connection(err)
  local srv = state.server
  if err or not srv then
    return
  end
  local c = uv.new_tcp()
  if not srv.tcp:accept(c) then
    close_handle(c)
    return
  end
  srv.clients[c] = true
  c:read_start(function(rerr, data)
    if rerr or data == nil then -- the client left; anything it sends is ignored
      drop_client(c)
    end
  end)
end

local function start_server(port, limit)
  local tcp = uv.new_tcp()
  local ok, err = tcp:bind("127.0.0.1", port)
  if ok then
    ok, err = tcp:listen(64, on_connection)
  end
  if not ok then
    close_handle(tcp)
    return nil, format("cannot listen on 127.0.0.1:%d: %s", port, tostring(err))
  end
  local bound = tcp:getsockname().port
  state.server = { tcp = tcp, port = bound, clients = {}, limit = limit }
  if state.dir then
    local f = io.open(state.dir .. "/" .. M.PORT_FILE, "w")
    if f then
      f:write(bound, "\n")
      f:close()
    end
  end
  return true
end

local function stop_server()
  local srv = state.server
  if not srv then
    return
  end
  state.server = nil
  for c in pairs(srv.clients) do
    close_handle(c)
  end
  close_handle(srv.tcp)
  if state.dir then
    uv.fs_unlink(state.dir .. "/" .. M.PORT_FILE)
  end
end

-- ---- stderr sink --------------------------------------------------------------------------------

local function write_stderr(level, logger, event, fields)
  local parts = { format("%-5s %s %s", level:upper(), logger, event) }
  if fields then
    for _, k in ipairs(sorted_keys(fields)) do
      local v = fields[k]
      parts[#parts + 1] = k .. "=" .. (type(v) == "table" and encode(v, 1) or tostring(v))
    end
  end
  io.stderr:write(concat(parts, " "), "\n")
end

-- ---- emitting -----------------------------------------------------------------------------------

--- Writes one event to every output (the level is not checked here; loggers check it).
-- @tparam string level "debug" | "info" | "warn" | "error"
-- @tparam string logger the logger's name
-- @tparam string event
-- @tparam[opt] table fields
function M.emit(level, logger, event, fields)
  if not LEVELS[level] then
    level = "info"
  end
  local line = M.format_line(level, logger, event, fields)
  state.lines = state.lines + 1
  if state.file then
    write_file(line)
  end
  if state.server then
    broadcast(line)
  end
  if state.stderr then
    write_stderr(level, logger, event, fields)
  end
  return line
end

--- Would a logger named `name` write an event of `level`?
function M.enabled(name, level)
  local lg = loggers[name]
  local threshold = (lg and lg.level) or state.level
  return (LEVELS[level] or 0) >= threshold
end

local Logger = {}
Logger.__index = Logger
Logger.__name = "kiwi.logger"

function Logger:__tostring()
  return "kiwi.logger " .. self.name
end

--- Logs at `level` if enabled: nothing is formatted otherwise.
function Logger:log(level, event, fields)
  local threshold = self.level or state.level
  if (LEVELS[level] or 0) < threshold then
    return
  end
  M.emit(level, self.name, event, fields)
end

function Logger:debug(event, fields) return self:log("debug", event, fields) end
function Logger:info(event, fields) return self:log("info", event, fields) end
function Logger:warn(event, fields) return self:log("warn", event, fields) end
function Logger:error(event, fields) return self:log("error", event, fields) end

--- Sets this logger's own level (nil: follow the global level).
function Logger:set_level(level)
  if level ~= nil and not LEVELS[level] then
    error("bad argument #1 to 'set_level' (unknown level '" .. tostring(level) .. "')", 2)
  end
  self.level = level and LEVELS[level] or nil
end

--- The logger named `name` (created on first use).
-- @tparam string name
function M.new(name)
  local lg = loggers[name]
  if not lg then
    lg = setmetatable({ name = name, level = nil }, Logger)
    loggers[name] = lg
  end
  return lg
end

--- Logs an engine event from the binding's event bridge. `fields` may be a table or the
-- engine's JSON object text.
function M.engine_event(level, event, fields)
  if not M.enabled("engine", level) then
    return
  end
  if type(fields) == "string" then
    local ok, t = pcall(require("cjson").decode, fields)
    fields = ok and type(t) == "table" and t or { raw = fields }
  end
  M.emit(level, "engine", tostring(event), fields)
end

-- ---- configuration ------------------------------------------------------------------------------

--- Validates options without applying them.
-- @return true, or nil and a message naming the option
function M.check(opts)
  if opts.level ~= nil and not LEVELS[opts.level] then
    return nil, format("log level '%s' is not one of debug, info, warn, error", tostring(opts.level))
  end
  if opts.port ~= nil and (math_type(opts.port) ~= "integer" or opts.port < -1 or opts.port > 65535) then
    return nil, format("log port %s is out of range (allowed -1..65535)", tostring(opts.port))
  end
  if opts.file_max_bytes ~= nil and (type(opts.file_max_bytes) ~= "number" or opts.file_max_bytes < 1) then
    return nil, "log file_max_bytes must be a positive number"
  end
  if opts.files_keep ~= nil and (math_type(opts.files_keep) ~= "integer" or opts.files_keep < 0) then
    return nil, "log files_keep must be a non-negative integer"
  end
  return true
end

--- Sets up the outputs. Validates first; applies nothing on an error.
-- @tparam table opts
--   `dir` (string: directory of kiwi.log and kiwi.port, created if missing; nil: no file),
--   `level` (global level, default "info"), `to_file` (default true when dir is set),
--   `file_max_bytes` (rotate above this, default 10 MiB), `files_keep` (rotated files kept,
--   default 5), `to_stderr` (boolean), `port` (-1 or nil: no server; 0: any free port),
--   `client_queue_limit` (bytes, default 1 MiB)
-- @return true, or nil, msg
function M.configure(opts)
  local ok, err = M.check(opts)
  if not ok then
    return nil, err
  end
  M.close()
  state.level = LEVELS[opts.level or "info"]
  state.stderr = opts.to_stderr and true or false
  state.dir = opts.dir
  if opts.dir then
    local st = uv.fs_stat(opts.dir)
    if not st then
      local mok, merr = uv.fs_mkdir(opts.dir, tonumber("755", 8))
      if not mok and not tostring(merr):find("EEXIST") then
        return nil, "cannot create log directory " .. tostring(merr)
      end
    end
    if opts.to_file ~= false then
      state.file = { max_bytes = opts.file_max_bytes or 10 * 1024 * 1024, keep = opts.files_keep or 5 }
      local fok, ferr = open_file()
      if not fok then
        state.file = nil
        return nil, ferr
      end
    end
  end
  if opts.port ~= nil and opts.port >= 0 then
    local sok, serr = start_server(opts.port, opts.client_queue_limit or M.DEFAULT_CLIENT_QUEUE_LIMIT)
    if not sok then
      M.close()
      return nil, serr
    end
  end
  return true
end

--- Changes settings that can change live: level, file_max_bytes, files_keep, to_stderr, to_file.
-- @return true, or nil, msg
function M.update(opts)
  local ok, err = M.check(opts)
  if not ok then
    return nil, err
  end
  if opts.level then
    state.level = LEVELS[opts.level]
  end
  if opts.to_stderr ~= nil then
    state.stderr = opts.to_stderr
  end
  if opts.to_file == false and state.file then
    if state.file.handle then
      state.file.handle:close()
    end
    state.file = nil
  elseif opts.to_file and not state.file and state.dir then
    state.file = { max_bytes = opts.file_max_bytes or 10 * 1024 * 1024, keep = opts.files_keep or 5 }
    local fok, ferr = open_file()
    if not fok then
      state.file = nil
      return nil, ferr
    end
  end
  if state.file then
    state.file.max_bytes = opts.file_max_bytes or state.file.max_bytes
    state.file.keep = opts.files_keep or state.file.keep
  end
  return true
end

--- The bound port of the broadcast server, or nil.
function M.port()
  return state.server and state.server.port
end

--- The number of connected log clients.
function M.clients()
  local n = 0
  if state.server then
    for _ in pairs(state.server.clients) do
      n = n + 1
    end
  end
  return n
end

--- Counters: lines written, clients dropped for being slow, current file size.
function M.stats()
  return { lines = state.lines, dropped_clients = state.dropped, clients = M.clients(),
    file_bytes = state.file and state.file.size or 0, port = M.port() }
end

--- The path of the current log file, or nil.
function M.file()
  return state.file and state.dir and file_path(0) or nil
end

-- ---- the client: `kiwi logs` -------------------------------------------------------------------

local COLORS = { debug = "\27[2m", info = "\27[32m", warn = "\27[33m", error = "\27[31;1m" }

--- Formats one received line for people: `HH:MM:SS.mmm LEVEL logger event key=value ...`.
-- @tparam string line a JSON line
-- @tparam[opt] boolean color ANSI colours by level
-- @treturn string|nil the text, and the record's level (nil for a line that is not JSON)
function M.pretty(line, color)
  local ok, rec = pcall(require("cjson").decode, line)
  if not ok or type(rec) ~= "table" then
    return line, nil
  end
  local level = tostring(rec.level)
  local ts = type(rec.ts) == "string" and rec.ts:sub(12, 23) or "?"
  local head = format("%s %-5s %s %s", ts, level:upper(), tostring(rec.logger or "-"),
    tostring(rec.event))
  if color then
    head = format("\27[2m%s\27[0m %s%-5s\27[0m %s \27[1m%s\27[0m", ts, COLORS[level] or "", level:upper(),
      tostring(rec.logger or "-"), tostring(rec.event))
  end
  local parts = { head }
  for _, k in ipairs(sorted_keys(rec)) do
    if not RESERVED[k] then
      local v = rec[k]
      if v == require("cjson").null then
        v = "null"
      end
      local text = type(v) == "table" and M.encode(v) or type(v) == "number" and encode_number(v)
        or tostring(v)
      parts[#parts + 1] = k .. "=" .. text
    end
  end
  return concat(parts, " "), level
end

--- Reads the port a running kiwi advertises in <data>/logs/kiwi.port.
function M.read_port(data)
  local f = io.open(data .. "/logs/" .. M.PORT_FILE, "r")
  if not f then
    return nil
  end
  local p = math.tointeger(tonumber(f:read("l") or ""))
  f:close()
  return p
end

--- Connects to a log stream and prints it until it ends (the `kiwi logs` subcommand).
-- @tparam table opts `port` (default: read from <data>/logs/kiwi.port), `data` (default
--   "./data"), `level` (lowest level shown, default "debug"), `raw` (print the JSON lines as
--   they come), `count` (leave after this many lines), `color` (default: stdout is a terminal),
--   `out`, `err` (files)
-- @treturn integer the exit code: 0 when the stream ended or `count` lines were shown, 1 when
--   there is nothing to connect to
function M.tail(opts)
  local out, errf = opts.out or io.stdout, opts.err or io.stderr
  local data = opts.data or "./data"
  local port = opts.port or M.read_port(data)
  if not port then
    errf:write(format("kiwi logs: no log port given and %s/logs/%s does not exist (is kiwi running"
      .. " on %s with log_port >= 0?)\n", data, M.PORT_FILE, data))
    return 1
  end
  local min = LEVELS[opts.level or "debug"] or LEVELS.debug
  local color = opts.color
  if color == nil then
    color = uv.guess_handle(1) == "tty"
  end
  local tcp, sig = uv.new_tcp(), uv.new_signal()
  local code, shown, buf = 0, 0, ""
  local function stop()
    if not tcp:is_closing() then
      tcp:close()
    end
    if not sig:is_closing() then
      sig:close()
    end
  end
  local function on_line(line)
    if opts.raw then
      local lv = line:match('"level":"(%a+)"')
      if (LEVELS[lv] or LEVELS.info) < min then
        return
      end
      out:write(line, "\n")
    else
      local text, lv = M.pretty(line, color)
      if lv and (LEVELS[lv] or LEVELS.info) < min then
        return
      end
      out:write(text, "\n")
    end
    out:flush()
    shown = shown + 1
    if opts.count and shown >= opts.count then
      stop()
    end
  end
  sig:start("sigint", stop)
  tcp:connect("127.0.0.1", port, function(err)
    if err then
      errf:write(format("kiwi logs: cannot connect to 127.0.0.1:%d: %s\n", port, tostring(err)))
      code = 1
      stop()
      return
    end
    tcp:read_start(function(rerr, chunk)
      if rerr or chunk == nil then
        errf:write(format("kiwi logs: the stream from 127.0.0.1:%d ended%s\n", port,
          rerr and (" (" .. tostring(rerr) .. ")") or ""))
        stop()
        return
      end
      buf = buf .. chunk
      while true do
        local nl = buf:find("\n", 1, true)
        if not nl or tcp:is_closing() then
          break
        end
        local line = buf:sub(1, nl - 1)
        buf = buf:sub(nl + 1)
        on_line(line)
      end
    end)
  end)
  uv.run("default")
  return code
end

--- Closes every output (the file, the server and its clients). Idempotent.
-- Handles are closed; run the luv loop afterwards so their close callbacks finish.
function M.close()
  stop_server()
  if state.file and state.file.handle then
    state.file.handle:close()
  end
  state.file = nil
  state.stderr = false
end

return M
