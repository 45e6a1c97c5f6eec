--- kiwi: the public Lua API of the kiwi LSM-tree key-value store (DESIGN §5).
--
--     local kiwi = require("kiwi")
--     local db = assert(kiwi.open("./data", { mode = "dev" }))
--     db:put("user:1", "Alice")
--     print(db:get("user:1"))                      --> Alice
--     for k, v in db:scan("user:", "user;") do print(k, v) end
--     db:close()
--
-- A db handle is the `kiwi.db` userdata of the C module `kiwi.core`; this module opens it and adds
-- the methods written in Lua (stats, config, update_config and the introspection calls, which
-- decode the engine's JSON with lua-cjson).
--
-- Conventions (luv's):
--
--  * A missing key is `nil`. A runtime failure is `nil, msg, code`: `code` is the status name
--    ("corruption", "io error", "busy", "invalid argument", "no space", "closed") and `msg` starts
--    with it and names the file, offset or setting involved.
--  * Misuse raises: a key or value that is not a string (numbers are *not* converted: `db:put(1,
--    "x")` raises "string expected, got number"), a wrong options table, a closed db, a released
--    snapshot, an iterator whose db has closed.
--  * Handles (db, snapshot, batch, scan iterator) are closed by `__gc` and support `<close>`.
--    `db:close()` is idempotent; it invalidates the db's live iterators and snapshots first.
--
-- Tasks (lua/kiwi/task.lua): `kiwi.run(fn, ...)`, `kiwi.spawn(fn, ...)`, `kiwi.sleep(ms)`,
-- `kiwi.wait(task, ...)`, `kiwi.yield()`, `kiwi.current()`, `kiwi.on_task_error(fn)`. Inside a
-- task every call that may wait (open, close, a get that misses memory, every write, flush,
-- compact_range, a scan step that needs the engine, trace) yields to the luv loop instead of
-- blocking, with the same results; docs/guide/lua-api.md marks each one.
--
-- Method reference (the C ones are documented in core/binding/*.c):
--
--  * `db:put(key, value, wopts)`, `db:delete(key, wopts)` -> `true` | `nil, msg, code`;
--    `wopts = { sync = bool }` (default: the db's `sync_writes`).
--  * `db:get(key, ropts)` -> value | `nil` | `nil, msg, code`;
--    `ropts = { snapshot = snap, fill_cache = bool }`.
--  * `db:write(batch, wopts)`: applies a `kiwi.batch()` atomically.
--  * `db:scan(start, stop, opts)` -> generic-for iterator over `key, value` in `[start, stop)`;
--    `opts = { reverse = bool, limit = n, prefix = str, snapshot = snap, fill_cache = bool }`.
--    Its 4th value is to-be-closed, so `break` releases the engine iterator. An engine error met
--    while scanning raises the engine's message.
--  * `db:snapshot()` -> snapshot (`snap:release()`, `snap:sequence()`).
--  * `db:flush()`, `db:compact_range(start, stop)`, `db:close()` -> `true` | `nil, msg, code`.
-- @module kiwi

local core = require("kiwi.core")
local task = require("kiwi.task")
local cjson = require("cjson")

local error = error
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local type = type
local sort = table.sort
local concat = table.concat
local char = string.char
local find = string.find
local utf8_codes = utf8.codes
local tointeger = math.tointeger

local M = {}

M._VERSION = core.version
M.version = core.version

local json = cjson.new()
json.decode_invalid_numbers(false)

local methods = core.db_methods

--- Maps a string decoded by cjson back to the bytes the engine escaped.
-- The engine writes every byte outside printable ASCII as `\u00XX`; cjson decodes that to the
-- code point U+00XX in UTF-8, so each code point U+0000..U+00FF is one original byte (Latin-1).
-- A string with a code point above U+00FF (not written by the engine) is returned unchanged.
-- @tparam string s a string from cjson.decode
-- @treturn string the raw bytes
function M.latin1_bytes(s)
  if not find(s, "[\128-\255]") then
    return s
  end
  local out, n = {}, 0
  local ok = pcall(function()
    for _, cp in utf8_codes(s) do
      if cp > 255 then
        error("not latin-1")
      end
      n = n + 1
      out[n] = char(cp)
    end
  end)
  if not ok then
    return s
  end
  return concat(out)
end

local latin1_bytes = M.latin1_bytes

-- Rewrites every string (values and table keys) of a decoded JSON tree to raw bytes, and every
-- integral number (cjson decodes all numbers as floats) to an integer, so ids and counters print
-- as 3, not 3.0.
local function to_bytes(v)
  if type(v) == "string" then
    return latin1_bytes(v)
  end
  if type(v) == "number" then
    return tointeger(v) or v
  end
  if type(v) ~= "table" then
    return v
  end
  local t = {}
  for k, x in pairs(v) do
    if type(k) == "string" then
      k = latin1_bytes(k)
    end
    t[k] = to_bytes(x)
  end
  return t
end

--- Decodes introspection JSON from the engine into plain tables with raw byte strings.
-- Every JSON string of kiwi_property/kiwi_trace is escaped byte by byte (core/src/json.h), so all
-- strings, keys and values alike, are mapped back to bytes; JSON null becomes nil; integral
-- numbers become integers.
-- @tparam string text JSON text
-- @treturn table|nil the decoded value, or nil, msg, "corruption" if it is not valid JSON
function M.decode_json(text)
  local ok, v = pcall(json.decode, text)
  if not ok then
    return nil, "corruption: bad introspection JSON from the engine: " .. tostring(v), "corruption"
  end
  return to_bytes(M.strip_null(v))
end

--- Replaces cjson.null by nil, recursively.
-- @param v a decoded JSON value
-- @return the same value without cjson.null
function M.strip_null(v)
  if v == cjson.null then
    return nil
  end
  if type(v) == "table" then
    for k, x in pairs(v) do
      v[k] = M.strip_null(x)
    end
  end
  return v
end

-- ---- tasks ---------------------------------------------------------------------------------------

M.run = task.run
M.spawn = task.spawn
M.sleep = task.sleep
M.wait = task.wait
M.yield = task.yield
M.current = task.current
M.on_task_error = task.on_error

-- Wraps an on_event handler: fields arrive as JSON text and are decoded to a table.
local function event_wrapper(fn)
  return function(level, event, fields_json)
    local fields = M.decode_json(fields_json) or { json = fields_json }
    fn(level, event, fields)
  end
end

--- Opens (creating if needed) the db in directory `path`. Inside a task it yields while the
-- engine opens (recovery reads files).
-- @tparam string path the data directory
-- @tparam[opt] table opts `mode` ("dev" or "prod", default "prod"), `on_event` (see below) and any
--   config.json setting as `name = value` (converted with tostring, applied in name order), e.g.
--   `{ mode = "dev", max_memtable_entries = 20000, sync_writes = false }`.
--   `on_event = function(level, event, fields) end` receives the engine's events (flush,
--   compaction, stalls, recovery...): level "debug"/"info"/"warn"/"error", a short event name, and
--   a table of fields. It runs on the loop thread while the luv loop runs; outside a running loop
--   it runs at the end of the next call on the db from the main thread. Events wait in a queue of
--   1024 per db; when it overflows the next delivery starts with an "events_dropped" event whose
--   `count` says how many were lost. Without on_event, `db:poll_events()` takes them.
-- @return a kiwi.db, or nil, msg, code: "busy" if the directory is open elsewhere (this process
--   or another), "invalid argument" for an unknown mode or setting or a bad value (the message
--   names the setting and its range), "io error"/"corruption" for what open found on disk
function M.open(path, opts)
  if type(path) ~= "string" then
    error("bad argument #1 to 'open' (string expected, got " .. type(path) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'open' (table expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts or {}
  local mode = opts.mode or "prod"
  if type(mode) ~= "string" then
    error("bad option 'mode' (string expected, got " .. type(mode) .. ")", 2)
  end
  local on_event = opts.on_event
  if on_event ~= nil and type(on_event) ~= "function" then
    error("bad option 'on_event' (function expected, got " .. type(on_event) .. ")", 2)
  end
  local names = {}
  for name in pairs(opts) do
    if type(name) ~= "string" then
      error("bad argument #2 to 'open' (setting names must be strings)", 2)
    end
    if name ~= "mode" and name ~= "on_event" then
      names[#names + 1] = name
    end
  end
  sort(names)
  local settings = {}
  for _, name in ipairs(names) do
    settings[name] = tostring(opts[name])
  end
  return core.open(path, mode, settings, on_event and event_wrapper(on_event))
end

--- Creates an empty write batch (independent of any db).
-- Methods: `b:put(k, v)`, `b:delete(k)`, `b:clear()` (each returns b), `b:count()`, `b:close()`.
-- @return a kiwi.batch
function M.batch()
  return core.batch()
end

-- ---- db methods written in Lua ------------------------------------------------------------------

-- An id for a property name: integers without ".0".
local function id_string(id)
  if type(id) == "number" then
    id = tointeger(id) or id
  end
  return tostring(id)
end

local function unknown_property(name)
  return nil, "invalid argument: unknown property " .. name, "invalid argument"
end

--- Reads and decodes one introspection property.
-- @tparam string name "stats", "levels", "memtables", "memtable:<id>", "sstable:<id>", "options"
-- @return a table, or nil, msg, "invalid argument" if the engine does not know the name
function methods:property(name)
  if type(name) ~= "string" then
    error("bad argument #1 to 'property' (string expected, got " .. type(name) .. ")", 2)
  end
  local text = self:property_json(name)
  if text == nil then
    return unknown_property(name)
  end
  return M.decode_json(text)
end

--- The engine's counters (property "stats") as a plain table.
-- @return table | nil, msg, code
function methods:stats()
  return self:property("stats")
end

--- The running settings (property "options") as a plain table.
-- @return table | nil, msg, code
function methods:config()
  return self:property("options")
end

--- Changes one setting of the running db (kiwi_set_option). Settings that cannot change live fail.
-- @tparam string name a config.json setting
-- @param value its new value (converted with tostring)
-- @return true | nil, msg, "invalid argument"
function methods:update_config(name, value)
  if type(name) ~= "string" then
    error("bad argument #1 to 'update_config' (string expected, got " .. type(name) .. ")", 2)
  end
  if value == nil then
    error("bad argument #2 to 'update_config' (value expected)", 2)
  end
  return self:set_option(name, tostring(value))
end

--- The memtables (active and immutable), property "memtables".
-- @return table | nil, msg, code
function methods:memtables()
  return self:property("memtables")
end

--- One memtable with its entries, property "memtable:<id>".
-- @param id the memtable id (as listed by db:memtables())
-- @return table | nil, msg, code
function methods:memtable(id)
  return self:property("memtable:" .. id_string(id))
end

--- The SSTables by level, property "levels".
-- @return table | nil, msg, code
function methods:sstables()
  return self:property("levels")
end

--- One SSTable with its properties and entries, property "sstable:<id>".
-- @param id the SSTable file number
-- @return table | nil, msg, code
function methods:sstable(id)
  return self:property("sstable:" .. id_string(id))
end

--- Takes the engine events queued for this db (also after close), oldest first.
-- @return a list of `{ level = s, event = s, fields = table }`
function methods:poll_events()
  local out = {}
  for i, e in ipairs(self:poll_events_raw()) do
    out[i] = { level = e[1], event = e[2], fields = M.decode_json(e[3]) or { json = e[3] } }
  end
  return out
end

--- A lookup of `key` traced step by step (layers asked, bloom answers, blocks read, cache hits).
-- @tparam string key
-- @return table | nil, msg, code
function methods:trace(key)
  if type(key) ~= "string" then
    error("bad argument #1 to 'trace' (string expected, got " .. type(key) .. ")", 2)
  end
  local text = self:trace_json(key)
  if text == nil then
    return nil, "invalid argument: trace is not available", "invalid argument"
  end
  return M.decode_json(text)
end

return M
