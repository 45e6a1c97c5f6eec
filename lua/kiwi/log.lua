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
--
-- This file owns the state, the loggers, the file sink with its rotation, and configuration.
-- The line format (JSON encoding, levels, the stderr text, `pretty`) is kiwi.log_format; the
-- TCP server and the `kiwi logs` client are kiwi.log_stream. Their public parts are re-exported
-- here, so callers need only kiwi.log.
-- @module kiwi.log

local uv = require("luv")
local fmt = require("kiwi.log_format")
local stream = require("kiwi.log_stream")

local format = string.format
local math_type = math.type
local tostring = tostring
local type = type

local M = {}

M.LEVELS = fmt.LEVELS
M.LEVEL_NAMES = fmt.LEVEL_NAMES
M.DEFAULT_CLIENT_QUEUE_LIMIT = 1024 * 1024
M.FILE_NAME = "kiwi.log"
M.PORT_FILE = stream.PORT_FILE

local LEVELS = M.LEVELS

-- ---- the line format: kiwi.log_format -----------------------------------------------------------

M.json_string = fmt.json_string
M.encode = fmt.encode
M.timestamp = fmt.timestamp
M.format_line = fmt.format_line
M.pretty = fmt.pretty

-- ---- state --------------------------------------------------------------------------------------

local state = {
  level = LEVELS.info, -- the global threshold
  dir = nil,
  file = nil, -- { handle, path, size, max_bytes, keep }
  stderr = false,
  server = nil, -- from kiwi.log_stream.listen: { tcp, port, clients = {tcp=true}, limit, ... }
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

-- ---- the TCP broadcast sink: kiwi.log_stream ----------------------------------------------------

-- Called after a broadcast dropped `n` slow clients.
local function on_clients_dropped(n, limit)
  state.dropped = state.dropped + n
  M.new("log"):warn("log_client_dropped", { clients = M.clients(),
    reason = "unsent data above client_queue_limit", limit = limit })
end

local function start_server(port, limit)
  local port_file = state.dir and (state.dir .. "/" .. M.PORT_FILE)
  local srv, err = stream.listen(port, limit, port_file, on_clients_dropped)
  if not srv then
    return nil, err
  end
  state.server = srv
  return true
end

local function stop_server()
  local srv = state.server
  if not srv then
    return
  end
  state.server = nil
  stream.stop(srv)
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
    stream.broadcast(state.server, line)
  end
  if state.stderr then
    io.stderr:write(fmt.stderr_text(level, logger, event, fields), "\n")
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
  return state.server and stream.count(state.server) or 0
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

-- ---- the client: `kiwi logs` (kiwi.log_stream) -------------------------------------------------

M.read_port = stream.read_port
M.tail = stream.tail

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
