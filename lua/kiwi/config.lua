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
--  * Lua settings (log_*): owned by Lua (LUA_SETTINGS), checked in Lua.
--
-- The settings themselves (the tables named above, parsing and checking values, validating a
-- settings table) live in kiwi.config_schema, whose public part this module re-exports. This
-- module owns config.json (read, encode, atomic write), the environment, and a loaded
-- configuration (the layers, open, live set, the listing).
--
-- Errors are `nil, msg, "invalid argument"`; msg names the file or variable, the key and the
-- reason, e.g. "invalid argument: ./data/config.json: key 'max_levels': 9 is out of range
-- (allowed 1..6)".
-- @module kiwi.config

local cjson = require("cjson")
local schema = require("kiwi.config_schema")

local concat = table.concat
local format = string.format
local ipairs = ipairs
local pairs = pairs
local sort = table.sort
local tostring = tostring
local type = type

local M = {}

M.FILE_NAME = "config.json"
M.MODES = schema.MODES
M.DEFAULT_MODE = "dev" -- the kiwi command's default; kiwi.open alone defaults to prod

-- The settings and their values (kiwi.config_schema): the same tables and functions.
M.LUA_SETTINGS = schema.LUA_SETTINGS
M.ENGINE_TYPES = schema.ENGINE_TYPES
M.ENGINE_LIVE = schema.ENGINE_LIVE
M.type_of = schema.type_of
M.is_lua_setting = schema.is_lua_setting
M.parse = schema.parse
M.to_engine_string = schema.to_engine_string

local INVALID = schema.INVALID
local engine_schema = schema.engine_schema
local describe = schema.describe
local value_type = schema.value_type
local fail = schema.fail
local validate = schema.validate

-- ---- config.json --------------------------------------------------------------------------------

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
