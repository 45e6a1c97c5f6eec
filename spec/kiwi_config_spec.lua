-- spec/kiwi_config_spec.lua: kiwi.config (lua/kiwi/config.lua): layers (defaults, config.json,
-- KIWI_* environment, command line), validation of each bad value with file, key and reason,
-- refusal before the engine starts, live updates that reach the core, persist atomically and
-- survive a restart.
local config = require("kiwi.config")
local helper = require("spec.helper")
local uv = require("luv")

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function env(t)
  return function(name)
    return t[name]
  end
end

local NO_ENV = env({})

-- A fresh data directory with the given config.json text (nil: none).
local function datadir(json)
  local dir = helper.tmpdir() .. "/data"
  assert(uv.fs_mkdir(dir, tonumber("755", 8)))
  if json then
    write(dir .. "/config.json", json)
  end
  return dir
end

describe("kiwi.config", function()
  describe("load", function()
    it("gives the mode's defaults when there is no config.json", function()
      local dir = datadir()
      local cfg = assert(config.load({ data = dir, getenv = NO_ENV }))
      assert.equal("dev", cfg.mode)
      assert.equal("default", cfg.mode_source)
      assert.equal("debug", cfg:get("log_level"))
      assert.equal(0, cfg:get("log_port"))
      assert.same({ mode = "dev" }, cfg:engine_options())
      local prod = assert(config.load({ data = dir, mode = "prod", getenv = NO_ENV }))
      assert.equal("prod", prod.mode)
      assert.equal("flag", prod.mode_source)
      assert.equal("info", prod:get("log_level"))
      assert.equal(dir .. "/config.json", cfg.path)
    end)

    it("layers config.json, then the environment, then the command line", function()
      local dir = datadir('{"mode": "prod", "max_memtable_entries": 50, "bloom_fpr_prod": 0.02,'
        .. ' "sync_writes": true, "log_level": "warn"}')
      local cfg = assert(config.load({ data = dir, getenv = NO_ENV }))
      assert.equal("prod", cfg.mode)
      assert.equal("file", cfg.mode_source)
      assert.equal(50, cfg:get("max_memtable_entries"))
      assert.equal("integer", math.type(cfg:get("max_memtable_entries")))
      assert.same({ mode = "prod", max_memtable_entries = "50", bloom_fpr_prod = "0.02",
        sync_writes = "true" }, cfg:engine_options())
      assert.equal("warn", cfg:get("log_level"))
      assert.equal("file", cfg:source("log_level"))

      cfg = assert(config.load({ data = dir, getenv = env({ KIWI_MAX_MEMTABLE_ENTRIES = "70",
        KIWI_LOG_LEVEL = "error", KIWI_MODE = "dev", KIWI_LUA = "lua5.4" }) }))
      assert.equal(70, cfg:get("max_memtable_entries"))
      assert.equal("env", cfg:source("max_memtable_entries"))
      assert.equal("error", cfg:get("log_level"))
      assert.equal("dev", cfg.mode)

      cfg = assert(config.load({ data = dir, mode = "prod", settings = { max_memtable_entries = 90 },
        getenv = env({ KIWI_MAX_MEMTABLE_ENTRIES = "70", KIWI_MODE = "dev" }) }))
      assert.equal(90, cfg:get("max_memtable_entries"))
      assert.equal("flag", cfg:source("max_memtable_entries"))
      assert.equal("prod", cfg.mode)
    end)

    it("reads another file given with file=", function()
      local dir = datadir('{"log_level": "warn"}')
      local other = helper.tmpdir() .. "/other.json"
      write(other, '{"log_level": "error"}')
      local cfg = assert(config.load({ data = dir, file = other, getenv = NO_ENV }))
      assert.equal("error", cfg:get("log_level"))
      assert.equal(other, cfg.path)
    end)
  end)

  describe("validation", function()
    -- each bad config.json names the file, the key and the reason
    local cases = {
      { '{"max_levels": "3"}', "key 'max_levels': expected an integer, got string \"3\"" },
      { '{"max_levels": 2.5}', "key 'max_levels': expected an integer, got number 2.5" },
      { '{"bloom_fpr_dev": true}', "key 'bloom_fpr_dev': expected a number, got boolean true" },
      { '{"sync_writes": "yes"}', "key 'sync_writes': expected true or false, got string \"yes\"" },
      { '{"sync_writes": 1}', "key 'sync_writes': expected true or false, got number 1" },
      { '{"compression": 5}', "key 'compression': expected a string, got number 5" },
      { '{"log_level": "loud"}', "key 'log_level': \"loud\" is not one of debug, info, warn, error" },
      { '{"log_port": 70000}', "key 'log_port': 70000 is out of range (allowed -1..65535)" },
      { '{"log_port": -2}', "key 'log_port': -2 is out of range (allowed -1..65535)" },
      { '{"log_file_max_mb": 0}', "key 'log_file_max_mb': 0 is out of range (allowed 0.001..4096)" },
      { '{"log_files_keep": -1}', "key 'log_files_keep': -1 is out of range (allowed 0..1000)" },
      { '{"log_to_stderr": null}', "key 'log_to_stderr': expected true or false, got null null" },
      { '{"max_memtable_entries": [1]}', "key 'max_memtable_entries': expected an integer, got array" },
      { '{"mode": "turbo"}', "key 'mode': \"turbo\" is not one of dev, prod" },
      { '{"colour": [1]}', "key 'colour': expected a number, string or boolean, got array" },
      { '{"max_levels": 3,}', "not valid JSON" },
      { '[1, 2]', "expected a JSON object of settings, got array" },
      { '"x"', "expected a JSON object of settings, got string" },
    }
    for _, c in ipairs(cases) do
      it("refuses " .. c[1], function()
        local dir = datadir(c[1])
        local cfg, msg, code = config.load({ data = dir, getenv = NO_ENV })
        assert.is_nil(cfg)
        assert.equal("invalid argument", code)
        assert.truthy(msg:find("invalid argument: " .. dir .. "/config.json: " .. c[2], 1, true), msg)
      end)
    end

    it("refuses a bad environment variable, naming it", function()
      local dir = datadir()
      local cases_env = {
        { { KIWI_MAX_LEVELS = "three" },
          "environment variable KIWI_MAX_LEVELS: expected a whole number, got \"three\"" },
        { { KIWI_SYNC_WRITES = "yes" },
          "environment variable KIWI_SYNC_WRITES: expected true or false, got \"yes\"" },
        { { KIWI_LOG_PORT = "99999" },
          "environment variable KIWI_LOG_PORT: 99999 is out of range (allowed -1..65535)" },
        { { KIWI_MODE = "fast" }, "environment variable KIWI_MODE: \"fast\" is not one of dev, prod" },
      }
      for _, c in ipairs(cases_env) do
        local cfg, msg = config.load({ data = dir, getenv = env(c[1]) })
        assert.is_nil(cfg)
        assert.equal("invalid argument: " .. c[2], msg)
      end
    end)

    it("refuses an engine value out of range at open, naming the file and key, before the engine starts",
      function()
      local dir = datadir('{"max_levels": 9}')
      local cfg = assert(config.load({ data = dir, getenv = NO_ENV }))
      local db, msg, code = cfg:open()
      assert.is_nil(db)
      assert.equal("invalid argument", code)
      assert.equal("invalid argument: " .. dir .. "/config.json: key 'max_levels': 9 is out of range"
        .. " (allowed 1..6)", msg)
      -- nothing was started: the directory holds only config.json
      assert.same({ "config.json" }, helper.files(dir))
    end)

    it("refuses an unknown key at open, before the engine starts (the engine owns the names)", function()
      local dir = datadir('{"colour": "blue", "max_levels": 3}')
      local cfg = assert(config.load({ data = dir, getenv = NO_ENV }))
      local db, msg, code = cfg:open()
      assert.is_nil(db)
      assert.equal("invalid argument", code)
      assert.equal("invalid argument: " .. dir .. "/config.json: key 'colour': unknown key (not a kiwi"
        .. " setting)", msg)
      assert.same({ "config.json" }, helper.files(dir))
    end)

    it("names the environment variable for an engine value out of range", function()
      local dir = datadir()
      local cfg = assert(config.load({ data = dir, getenv = env({ KIWI_BLOCK_SIZE = "100" }) }))
      local db, msg = cfg:open()
      assert.is_nil(db)
      assert.equal("invalid argument: environment variable KIWI_BLOCK_SIZE: key 'block_size': 100 is out"
        .. " of range (allowed 256..1048576)", msg)
    end)
  end)

  describe("set", function()
    it("applies a live engine setting, persists it atomically, and the value survives a restart", function()
      local dir = datadir()
      local cfg = assert(config.load({ data = dir, getenv = NO_ENV }))
      local db = assert(cfg:open())
      assert.equal(10, db:config().max_memtable_entries)
      assert.equal(50, cfg:set(db, "max_memtable_entries", "50"))
      assert.equal(50, db:config().max_memtable_entries) -- reached the core
      assert.equal(0.02, cfg:set(db, "bloom_fpr_dev", "0.02"))
      assert.equal(true, cfg:set(db, "sync_writes", "true"))
      assert.equal(true, db:config().sync_writes)
      assert.same({ "config.json" }, helper.files(dir, ".json"))
      assert.same({}, helper.files(dir, ".tmp"))
      assert.equal('{\n  "bloom_fpr_dev": 0.02,\n  "max_memtable_entries": 50,\n  "sync_writes": true\n}\n',
        helper.read_file(dir .. "/config.json"))
      db:close()

      local cfg2 = assert(config.load({ data = dir, getenv = NO_ENV }))
      local db2 = assert(cfg2:open())
      assert.equal(50, db2:config().max_memtable_entries)
      assert.equal(0.02, db2:config().bloom_fpr_dev)
      assert.equal(true, db2:config().sync_writes)
      assert.equal("file", cfg2:source("max_memtable_entries"))
      db2:close()
    end)

    it("refuses what cannot change live with the engine's message and does not persist it", function()
      local dir = datadir()
      local cfg = assert(config.load({ data = dir, getenv = NO_ENV }))
      local db = assert(cfg:open())
      local v, msg, code = cfg:set(db, "flush_max_workers", "4")
      assert.is_nil(v)
      assert.equal("invalid argument", code)
      assert.equal("invalid argument: setting flush_max_workers cannot change on a running db (set it"
        .. " before open)", msg)
      v, msg = cfg:set(db, "max_levels", "x")
      assert.is_nil(v)
      assert.equal("invalid argument: setting max_levels: expected a whole number, got \"x\"", msg)
      v, msg = cfg:set(db, "max_memtable_entries", "0")
      assert.is_nil(v)
      assert.matches("out of range", msg)
      v, msg = cfg:set(db, "log_port", "9000")
      assert.is_nil(v)
      assert.matches("log_port cannot change on a running db", msg)
      v, msg = cfg:set(db, "mode", "prod")
      assert.is_nil(v)
      assert.matches("mode cannot change on a running db", msg)
      v, msg = cfg:set(db, "nope", "1")
      assert.is_nil(v)
      assert.equal("invalid argument: unknown setting 'nope'", msg)
      assert.is_nil(io.open(dir .. "/config.json"))
      assert.equal(10, db:config().max_memtable_entries)
      db:close()
    end)

    it("applies a Lua setting through the callback", function()
      local dir = datadir()
      local cfg = assert(config.load({ data = dir, getenv = NO_ENV }))
      local seen = {}
      assert.equal("warn", cfg:set(nil, "log_level", "warn", function(name, value)
        seen[#seen + 1] = name .. "=" .. value
        return true
      end))
      assert.same({ "log_level=warn" }, seen)
      assert.equal("warn", cfg:get("log_level"))
      assert.equal('{\n  "log_level": "warn"\n}\n', helper.read_file(dir .. "/config.json"))
      local v, msg = cfg:set(nil, "log_level", "loud")
      assert.is_nil(v)
      assert.equal("invalid argument: setting log_level: \"loud\" is not one of debug, info, warn, error",
        msg)
    end)

    it("undoes the live change when the file cannot be written", function()
      local dir = datadir()
      local cfg = assert(config.load({ data = dir, file = dir .. "/missing/config.json", getenv = NO_ENV }))
      local db = assert(cfg:open())
      local v, msg, code = cfg:set(db, "max_memtable_entries", "77")
      assert.is_nil(v)
      assert.equal("io error", code)
      assert.matches("missing/config.json", msg)
      assert.equal(10, db:config().max_memtable_entries)
      db:close()
    end)
  end)

  describe("files", function()
    it("writes sorted keys, integers without .0, and reads them back", function()
      local dir = helper.tmpdir()
      local path = dir .. "/c.json"
      assert(config.write_file(path, { b = 2.0, a = "x", c = false, d = 0.25 }))
      assert.equal('{\n  "a": "x",\n  "b": 2,\n  "c": false,\n  "d": 0.25\n}\n', helper.read_file(path))
      assert(config.write_file(path, {}))
      assert.equal("{}\n", helper.read_file(path))
    end)

    it("never replaces something that is not a regular file", function()
      local ok, msg, code = config.write_file("/dev/null", { a = 1 })
      assert.is_nil(ok)
      assert.equal("io error", code)
      assert.equal("io error: /dev/null: not a regular file (char)", msg)
      local dir = helper.tmpdir()
      assert(uv.fs_mkdir(dir .. "/sub", tonumber("755", 8)))
      assert.is_nil((config.write_file(dir .. "/sub", {})))
      assert.same({ "sub" }, helper.files(dir))
    end)

    it("treats a missing file as empty", function()
      assert.same({}, config.read_file(helper.tmpdir() .. "/none.json"))
    end)
  end)
end)
