--- kiwi.config: the configuration of a data directory (DESIGN §6): config.json, dev and prod
-- defaults, KIWI_<NAME> environment overrides, validation, live updates persisted atomically.
--
--     local config = require("kiwi.config")
--     local cfg = assert(config.load({ data = "./data", mode = "dev" }))   -- validates everything
--     local db = assert(cfg:open())                                     -- only then opens
--     assert(cfg:set(db, "max_memtable_entries", "50"))                 -- live + config.json
--
-- Where a value comes from, lowest to highest: the mode's default, config.json, the environment
-- (KIWI_MAX_LEVELS=4), the command line. config.json holds only what was set in it (by hand or
-- by `config set`); defaults are never written, so a newer kiwi's defaults apply to old files.
--
-- Two kinds of settings:
--
--  * engine settings (max_memtable_entries, bloom_fpr_dev, ...): the C core owns their names,
--    ranges, defaults and live-ness (core/src/options.c). This module knows their types
--    (ENGINE_TYPES) to reject a wrong JSON type before the engine sees it; the engine checks
--    names and ranges while kiwi.open builds its options, before the directory is touched, and
--    its message is re-said here naming the file (or variable) and the key. A name missing from
--    ENGINE_TYPES is passed on (it may be newer than this table); the engine refuses it if it is
--    not a setting. If the binding offers `core.settings()` (a table of name -> {type, min, max,
--    live, dev, prod}), that table is used instead, and unknown names are refused here.
--  * Lua settings (log_*): owned here (LUA_SETTINGS), checked here.
--
-- Errors are `nil, msg, "invalid argument"`; msg names the file or variable, the key and the
-- reason, e.g. "invalid argument: ./data/config.json: key 'max_levels': 9 is out of range
-- (allowed 1..6)".
-- @module kiwi.config

local cjson = require("cjson")

local concat = table.concat
local format = string.format
local ipairs = ipairs
local pairs = pairs
local sort = table.sort
local tointeger = math.tointeger
local tostring = tostring
local type = type

local M = {}

M.FILE_NAME = "config.json"
M.MODES = { dev = true, prod = true }
M.DEFAULT_MODE = "dev" -- the kiwi command's default; kiwi.open alone defaults to prod

local INVALID = "invalid argument"

--- Settings owned by Lua (the logger). type: "integer" | "number" | "boolean" | "enum".
M.LUA_SETTINGS = {
  log_level = { type = "enum", values = { "debug", "info", "warn", "error" }, live = true,
    dev = "debug", prod = "info", doc = "lowest level written" },
  log_to_file = { type = "boolean", live = true, dev = true, prod = true,
    doc = "write <data>/logs/kiwi.log" },
  log_file_max_mb = { type = "number", min = 0.001, max = 4096, live = true, dev = 10, prod = 64,
    doc = "rotate kiwi.log above this size (MiB)" },
  log_files_keep = { type = "integer", min = 0, max = 1000, live = true, dev = 3, prod = 10,
    doc = "rotated files kept (kiwi.log.1 .. .N)" },
  log_to_stderr = { type = "boolean", live = true, dev = false, prod = false,
    doc = "also print each line on stderr" },
  log_port = { type = "integer", min = -1, max = 65535, live = false, dev = 0, prod = 0,
    doc = "TCP log stream on 127.0.0.1: -1 off, 0 any free port (see logs/kiwi.port)" },
}

--- Types of the engine's settings (docs/guide/configuration.md), for type checks and parsing.
-- Ranges, defaults and live-ness come from the engine itself.
M.ENGINE_TYPES = {
  max_memtable_entries = "integer", max_memtable_size_mb = "number",
  l0_compaction_threshold = "integer", l0_slowdown_writes_trigger = "integer",
  l0_stop_writes_trigger = "integer", target_file_size_mb = "number", level_base_mb = "number",
  level_size_ratio = "integer", compaction_workers = "integer",
  bloom_fpr_dev = "number", bloom_fpr_prod = "number", flush_max_workers = "integer",
  max_levels = "integer", block_size = "integer", max_immutable_memtables = "integer",
  block_cache_data_mb = "number", block_cache_index_mb = "number", block_cache_bloom_mb = "number",
  sync_writes = "boolean", wal_recovery = "string", compression = "string", data_reads = "string",
  wal_writes = "string",
}

--- Engine settings that can change on a running db (for the `config` listing when the engine
-- does not say; the engine's answer to update_config is what counts).
M.ENGINE_LIVE = {
  max_memtable_entries = true, max_memtable_size_mb = true, l0_compaction_threshold = true,
  l0_slowdown_writes_trigger = true, l0_stop_writes_trigger = true, target_file_size_mb = true,
  level_base_mb = true, level_size_ratio = true, bloom_fpr_dev = true, bloom_fpr_prod = true,
  block_size = true, max_immutable_memtables = true, sync_writes = true,
  block_cache_data_mb = true, block_cache_index_mb = true, block_cache_bloom_mb = true,
  data_reads = true, wal_writes = true,
}

-- The engine's own settings table, when the binding provides one.
local function engine_schema()
  local ok, core = pcall(require, "kiwi.core")
  if ok and type(core) == "table" and type(core.settings) == "function" then
    local sok, t = pcall(core.settings)
    if sok and type(t) == "table" then
      return t
    end
  end
  return nil
end

--- The type of a setting ("integer", "number", "boolean", "enum", "string") or nil if unknown.
function M.type_of(name)
  local s = M.LUA_SETTINGS[name]
  if s then
    return s.type
  end
  local es = engine_schema()
  if es and es[name] then
    return es[name].type
  end
  return M.ENGINE_TYPES[name]
end

function M.is_lua_setting(name)
  return M.LUA_SETTINGS[name] ~= nil
end

-- ---- values -------------------------------------------------------------------------------------

local function describe(v)
  if type(v) == "number" then
    return M.to_engine_string(v)
  elseif type(v) == "string" then
    return format("%q", v)
  elseif type(v) == "table" then
    return (next(v) == nil or #v > 0) and "an array" or "an object"
  elseif v == cjson.null then
    return "null"
  end
  return tostring(v)
end

local function value_type(v)
  if v == cjson.null then
    return "null"
  elseif type(v) == "table" then
    return (next(v) ~= nil and #v == 0) and "object" or "array"
  end
  return type(v) -- "number": JSON does not tell 1 from 1.0
end

-- Checks a Lua-typed value (from JSON or parsed from text) against a type and a Lua setting's
-- range. Returns the normalised value, or nil and the reason.
local function check_value(name, v, vtype)
  local s = M.LUA_SETTINGS[name]
  if vtype == "integer" then
    local i = type(v) == "number" and tointeger(v) or nil
    if not i then
      return nil, format("expected an integer, got %s %s", value_type(v), describe(v))
    end
    v = i
  elseif vtype == "number" then
    if type(v) ~= "number" then
      return nil, format("expected a number, got %s %s", value_type(v), describe(v))
    end
    if v ~= v or v == math.huge or v == -math.huge then -- cjson reads NaN and Infinity
      return nil, format("expected a finite number, got %s", tostring(v))
    end
    v = tointeger(v) or v
  elseif vtype == "boolean" then
    if type(v) ~= "boolean" then
      return nil, format("expected true or false, got %s %s", value_type(v), describe(v))
    end
  elseif vtype == "enum" or vtype == "string" then
    if type(v) ~= "string" then
      return nil, format("expected a string, got %s %s", value_type(v), describe(v))
    end
  elseif vtype == "scalar" then
    return nil, format("expected a number, string or boolean, got %s", value_type(v))
  end
  if s then
    if s.min and (v < s.min or v > s.max) then
      return nil, format("%s is out of range (allowed %s..%s)", tostring(v), tostring(s.min),
        tostring(s.max))
    end
    if s.values then
      for _, ok in ipairs(s.values) do
        if v == ok then
          return v
        end
      end
      return nil, format("%s is not one of %s", describe(v), concat(s.values, ", "))
    end
  end
  return v
end

--- Parses a setting's value from text (the REPL's `config set`, an environment variable).
-- @tparam string name
-- @tparam string text
-- @return the typed value, or nil and the reason
function M.parse(name, text)
  local vtype = M.type_of(name)
  local v = text
  if vtype == "integer" or vtype == "number" then
    v = tonumber(text)
    if v == nil then
      return nil, format("expected a %s, got %q", vtype == "integer" and "whole number" or "number", text)
    end
  elseif vtype == "boolean" then
    if text == "true" then
      v = true
    elseif text == "false" then
      v = false
    else
      return nil, format("expected true or false, got %q", text)
    end
  end
  if vtype == nil then
    return text -- an engine setting this module does not know: the engine decides
  end
  return check_value(name, v, vtype)
end

--- A value as the engine's kiwi_options_set wants it (integers without ".0").
function M.to_engine_string(v)
  if type(v) == "number" then
    local i = tointeger(v)
    if i then
      return format("%d", i)
    end
    return format("%.17g", v)
  end
  return tostring(v)
end

-- ---- config.json --------------------------------------------------------------------------------

local function fail(where, key, reason)
  local msg = key and format("%s: key '%s': %s", where, key, reason) or format("%s: %s", where, reason)
  return nil, INVALID .. ": " .. msg, INVALID
end

--- Validates a decoded settings table. Returns the normalised table or nil, msg, code.
-- @tparam table t name -> value
-- @tparam string where the file (or "environment") named in messages
local function validate(t, where)
  local names = {}
  for k in pairs(t) do
    if type(k) ~= "string" then
      return fail(where, nil, "keys must be strings")
    end
    names[#names + 1] = k
  end
  sort(names)
  local out = {}
  for _, k in ipairs(names) do
    local v = t[k]
    if k == "mode" then
      if not M.MODES[v] then
        return fail(where, k, format("%s is not one of dev, prod", describe(v)))
      end
      out[k] = v
    else
      local vtype = M.type_of(k)
      if vtype == nil and engine_schema() then
        return fail(where, k, "unknown key (not a kiwi setting)")
      elseif vtype == nil then
        -- A name this module does not know may be an engine setting newer than ENGINE_TYPES: it
        -- goes to the engine, which refuses an unknown name at open, before the db starts.
        vtype = type(v) == "table" and "scalar" or nil
      end
      local nv, reason = check_value(k, v, vtype)
      if nv == nil then
        return fail(where, k, reason)
      end
      out[k] = nv
    end
  end
  return out
end

--- Reads and validates a config.json. A missing file is an empty table.
-- @tparam string path
-- @return table name -> value, or nil, msg, code
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return {}
  end
  local text = f:read("a")
  f:close()
  if text:match("^%s*$") then -- an empty file sets nothing
    return {}
  end
  local ok, t = pcall(cjson.decode, text)
  if not ok then
    return fail(path, nil, "not valid JSON (" .. tostring(t):gsub("^.-: ", "") .. ")")
  end
  if type(t) ~= "table" or (next(t) ~= nil and #t > 0) then
    return fail(path, nil, "expected a JSON object of settings, got " .. value_type(t))
  end
  return validate(t, path)
end

--- Encodes a flat settings table as JSON, one key per line in name order.
function M.encode_file(t)
  local names = {}
  for k in pairs(t) do
    names[#names + 1] = k
  end
  sort(names)
  local lines = {}
  for i, k in ipairs(names) do
    local v = t[k]
    local text
    if type(v) == "number" then
      text = M.to_engine_string(v)
    else
      text = cjson.encode(v)
    end
    lines[i] = format("  %s: %s", cjson.encode(k), text)
  end
  if #lines == 0 then
    return "{}\n"
  end
  return "{\n" .. concat(lines, ",\n") .. "\n}\n"
end

--- Writes a settings table to path atomically: a temp file, fsync, rename, fsync the directory.
-- @return true, or nil, msg, "io error"
function M.write_file(path, t)
  local uv = require("luv")
  local tmp = path .. ".tmp"
  local text = M.encode_file(t)
  local function ioerr(what, err)
    uv.fs_unlink(tmp)
    return nil, format("io error: %s: %s: %s", path, what, tostring(err)), "io error"
  end
  local st = uv.fs_stat(path)
  if st and st.type ~= "file" then -- never rename over /dev/null or a directory
    return nil, format("io error: %s: not a regular file (%s)", path, st.type), "io error"
  end
  local fd, err = uv.fs_open(tmp, "w", tonumber("644", 8))
  if not fd then
    return ioerr("create " .. tmp, err)
  end
  local n, werr = uv.fs_write(fd, text, 0)
  if n ~= #text then
    uv.fs_close(fd)
    return ioerr("write", werr or "short write")
  end
  local sok, serr = uv.fs_fsync(fd)
  uv.fs_close(fd)
  if not sok then
    return ioerr("fsync", serr)
  end
  local rok, rerr = uv.fs_rename(tmp, path)
  if not rok then
    return ioerr("rename", rerr)
  end
  local dir = path:match("^(.*)/[^/]*$") or "."
  local dfd = uv.fs_open(dir, "r", 0)
  if dfd then
    uv.fs_fsync(dfd) -- makes the rename durable
    uv.fs_close(dfd)
  end
  return true
end

-- ---- environment --------------------------------------------------------------------------------

--- The environment variable for a setting: KIWI_ and the name in upper case.
function M.env_name(name)
  return "KIWI_" .. name:upper()
end

local function env_settings(getenv)
  local out, sources = {}, {}
  local names = { "mode" }
  for k in pairs(M.LUA_SETTINGS) do
    names[#names + 1] = k
  end
  local es = engine_schema() or M.ENGINE_TYPES
  for k in pairs(es) do
    names[#names + 1] = k
  end
  sort(names)
  for _, k in ipairs(names) do
    local var = M.env_name(k)
    local text = getenv(var)
    if text ~= nil and text ~= "" then
      local v, reason
      if k == "mode" then
        v = M.MODES[text] and text or nil
        reason = format("%q is not one of dev, prod", text)
      else
        v, reason = M.parse(k, text)
      end
      if v == nil then
        return nil, format("%s: environment variable %s: %s", INVALID, var, reason), INVALID
      end
      out[k], sources[k] = v, "env"
    end
  end
  return out, sources
end

-- ---- a loaded configuration ---------------------------------------------------------------------

local Config = {}
Config.__index = Config
Config.__name = "kiwi.config"

function Config:__tostring()
  return format("kiwi.config (%s mode) %s", self.mode, self.path)
end

--- Loads and validates the whole configuration; nothing is opened.
-- @tparam table opts `data` (directory, default "./data"), `file` (config file, default
--   <data>/config.json), `mode` (from the command line), `settings` (name -> value from the
--   command line), `getenv` (default os.getenv)
-- @return a configuration, or nil, msg, "invalid argument"
function M.load(opts)
  opts = opts or {}
  local data = opts.data or "./data"
  local path = opts.file or (data .. "/" .. M.FILE_NAME)
  local file, ferr, fcode = M.read_file(path)
  if not file then
    return nil, ferr, fcode
  end
  local env, esrc_or_err, ecode = env_settings(opts.getenv or os.getenv)
  if not env then
    return nil, esrc_or_err, ecode
  end
  local flags = {}
  if opts.settings then
    local v, err, code = validate(opts.settings, "command line")
    if not v then
      return nil, err, code
    end
    flags = v
  end
  if opts.mode ~= nil and not M.MODES[opts.mode] then
    return fail("command line", "mode", format("%s is not one of dev, prod", describe(opts.mode)))
  end
  local cfg = setmetatable({ data = data, path = path, file = file, values = {}, sources = {} }, Config)
  for _, layer in ipairs({ { file, "file" }, { env, "env" }, { flags, "flag" } }) do
    for k, v in pairs(layer[1]) do
      cfg.values[k], cfg.sources[k] = v, layer[2]
    end
  end
  if opts.mode then
    cfg.values.mode, cfg.sources.mode = opts.mode, "flag"
  end
  cfg.mode = cfg.values.mode or M.DEFAULT_MODE
  cfg.values.mode = nil
  cfg.mode_source = cfg.sources.mode or "default"
  cfg.sources.mode = nil
  return cfg
end

--- A setting's effective value in Lua form (Lua settings fall back to the mode's default).
function Config:get(name)
  local v = self.values[name]
  if v ~= nil then
    return v
  end
  local s = M.LUA_SETTINGS[name]
  return s and s[self.mode]
end

--- Where a setting's value comes from: "file", "env", "flag" or "default".
function Config:source(name)
  return self.sources[name] or "default"
end

--- The engine settings to give kiwi.open: mode plus every explicit engine setting as text.
function Config:engine_options()
  local t = { mode = self.mode }
  for k, v in pairs(self.values) do
    if not M.LUA_SETTINGS[k] then
      t[k] = M.to_engine_string(v)
    end
  end
  return t
end

--- The options for kiwi.log.configure.
function Config:log_options()
  return {
    dir = self.data .. "/logs",
    level = self:get("log_level"),
    to_file = self:get("log_to_file"),
    file_max_bytes = math.floor(self:get("log_file_max_mb") * 1024 * 1024),
    files_keep = self:get("log_files_keep"),
    to_stderr = self:get("log_to_stderr"),
    port = self:get("log_port"),
  }
end

-- Names where an engine setting's value came from, for messages.
function Config:where(name)
  local src = self.sources[name]
  if src == "file" then
    return self.path
  elseif src == "env" then
    return "environment variable " .. M.env_name(name)
  elseif src == "flag" then
    return "command line"
  end
  return "settings"
end

--- Re-says an engine message about a setting with the place its value came from.
function Config:explain(msg)
  msg = tostring(msg)
  local body = msg:gsub("^invalid argument: ", "")
  local name, reason = body:match("^setting ([%w_]+): (.*)$")
  if not name then
    name = body:match("^setting ([%w_]+) cannot change")
    reason = name and body:gsub("^setting [%w_]+ ", "")
  end
  if not name then
    name = body:match("^unknown setting '([^']+)'")
    reason = name and "unknown key (not a kiwi setting)"
  end
  if not name or not self.sources[name] then
    return msg
  end
  return format("%s: %s: key '%s': %s", INVALID, self:where(name), name, reason)
end

--- Opens the db with this configuration (kiwi.open validates every engine setting before it
-- touches the directory, so a bad value never leaves a half-configured engine running).
-- @tparam[opt] table extra more kiwi.open options (e.g. on_event)
-- @return db, or nil, msg, code
function Config:open(extra)
  local kiwi = require("kiwi")
  local o = self:engine_options()
  for k, v in pairs(extra or {}) do
    o[k] = v
  end
  local db, msg, code = kiwi.open(self.data, o)
  if not db and code == INVALID then
    return nil, self:explain(msg), code
  end
  return db, msg, code
end

--- Changes a setting live and persists it in the config file.
-- Engine settings go through db:update_config (the engine refuses what cannot change live);
-- Lua settings are applied by `apply_lua(name, value)` when given. The file is rewritten
-- atomically; if that fails the live change is undone.
-- @param db the open db (nil: only Lua settings can change)
-- @tparam string name
-- @tparam string text the new value as text
-- @tparam[opt] function apply_lua
-- @return the typed value, or nil, msg, code
function Config:set(db, name, text, apply_lua)
  if name == "mode" then
    return nil, INVALID .. ": setting mode cannot change on a running db (edit " .. self.path
      .. " or use --mode)", INVALID
  end
  local v, reason = M.parse(name, text)
  if v == nil then
    return nil, format("%s: setting %s: %s", INVALID, name, reason), INVALID
  end
  local old = self:get(name)
  local lua = M.LUA_SETTINGS[name]
  if lua then
    if not lua.live then
      return nil, format("%s: setting %s cannot change on a running db (set it in %s and restart)",
        INVALID, name, self.path), INVALID
    end
    if apply_lua then
      local ok, err = apply_lua(name, v)
      if not ok then
        return nil, format("%s: setting %s: %s", INVALID, name, tostring(err)), INVALID
      end
    end
  else
    if not db then
      return nil, format("%s: setting %s: no open db to apply it to", INVALID, name), INVALID
    end
    local cur = db:config()
    old = cur and cur[name]
    local ok, msg, code = db:update_config(name, M.to_engine_string(v))
    if not ok then
      return nil, msg, code
    end
  end
  local file = {}
  for k, x in pairs(self.file) do
    file[k] = x
  end
  file[name] = v
  local ok, err, code = M.write_file(self.path, file)
  if not ok then -- undo the live change: the file and the running db must agree
    if lua and apply_lua then
      apply_lua(name, old)
    elseif not lua and old ~= nil then
      db:update_config(name, M.to_engine_string(old))
    end
    return nil, err, code
  end
  self.file = file
  self.values[name], self.sources[name] = v, "file"
  return v
end

--- Records the mode in the config file if the file does not name one, so a data directory keeps
-- the mode it was created with (the kiwi command calls this for a new directory).
-- @return true, or nil, msg, "io error"
function Config:record_mode()
  if self.file.mode ~= nil then
    return true
  end
  local file = { mode = self.mode }
  for k, x in pairs(self.file) do
    file[k] = x
  end
  local ok, err, code = M.write_file(self.path, file)
  if not ok then
    return nil, err, code
  end
  self.file = file
  return true
end

--- The effective settings as rows {name, value, source, live} in name order: the engine's
-- (db:config(), the running truth) and the Lua ones. `live` is nil when not known.
function Config:rows(db)
  local rows = {}
  local engine = db and db:config() or {}
  local es = engine_schema()
  for k, v in pairs(engine) do
    if k ~= "mode" then
      local live = es and es[k] and es[k].live
      if live == nil and M.ENGINE_TYPES[k] then
        live = M.ENGINE_LIVE[k] or false
      end -- still nil: a setting newer than these tables, shown as "?"
      rows[#rows + 1] = { name = k, value = v, source = self:source(k), live = live }
    end
  end
  for k, s in pairs(M.LUA_SETTINGS) do
    rows[#rows + 1] = { name = k, value = self:get(k), source = self:source(k), live = s.live }
  end
  sort(rows, function(a, b) return a.name < b.name end)
  table.insert(rows, 1, { name = "mode", value = self.mode, source = self.mode_source, live = false })
  return rows
end

return M
