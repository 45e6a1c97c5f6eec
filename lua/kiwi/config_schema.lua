--- kiwi.config_schema: the settings kiwi.config knows and the values they accept: the Lua
-- settings (LUA_SETTINGS), the engine settings' types and live-ness (ENGINE_TYPES, ENGINE_LIVE, or
-- the engine's own table when the binding offers `core.settings()`), parsing a value from text,
-- checking a decoded value against a type and range, and validating a whole settings table
-- (config.json, the command line). It reads no file and opens nothing; kiwi.core is only looked
-- up, so it loads without the binding (as the config fuzz harness runs it).
--
-- kiwi.config re-exports the public part (MODES, LUA_SETTINGS, ENGINE_TYPES, ENGINE_LIVE,
-- type_of, is_lua_setting, parse, to_engine_string: the same tables and functions); the helpers
-- at the end (engine_schema, describe, value_type, fail, validate, INVALID) are for kiwi.config.
-- @module kiwi.config_schema

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

M.MODES = { dev = true, prod = true }

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
  wal_writes = "string", sync_waits = "string",
}

--- Engine settings that can change on a running db (for the `config` listing when the engine
-- does not say; the engine's answer to update_config is what counts).
M.ENGINE_LIVE = {
  max_memtable_entries = true, max_memtable_size_mb = true, l0_compaction_threshold = true,
  l0_slowdown_writes_trigger = true, l0_stop_writes_trigger = true, target_file_size_mb = true,
  level_base_mb = true, level_size_ratio = true, bloom_fpr_dev = true, bloom_fpr_prod = true,
  block_size = true, max_immutable_memtables = true, sync_writes = true,
  block_cache_data_mb = true, block_cache_index_mb = true, block_cache_bloom_mb = true,
  data_reads = true, wal_writes = true, sync_waits = true,
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

-- ---- a settings table ---------------------------------------------------------------------------

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

-- ---- for kiwi.config ----------------------------------------------------------------------------

M.INVALID = INVALID
M.engine_schema = engine_schema
M.describe = describe
M.value_type = value_type
M.fail = fail
M.validate = validate

return M
