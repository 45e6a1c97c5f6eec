--- The Lua half of the config.json fuzz target (spec/fuzz/fuzz_config.c embeds Lua 5.4 and
-- calls the function this chunk returns once per input, with the path of a config.json holding
-- the input and a scratch directory).
--
-- The contract under test (lua/kiwi/config.lua): for any bytes, config.read_file and
-- config.load return a table or `nil, "invalid argument: ...", "invalid argument"`; they never
-- raise. Any error raised here (an assert below, or one from config.lua) is a crash for the
-- fuzzer. Oracles on an accepted file:
--   * keys are strings; mode is dev or prod; every Lua setting has its type and lies in its
--     range (min <= v <= max, so NaN is refused) or is one of its values;
--   * round trip: config.encode_file(t) is read back by config.read_file as the same table;
--   * config.load with that file succeeds and its engine_options / log_options are well-formed
--     (engine values are strings; file_max_bytes a positive integer);
--   * every engine setting goes to the engine's own parser (kiwi_options_set through the C
--     function `engine_set`), which must not crash whatever it answers.

local config = require("kiwi.config")

local INVALID = "invalid argument"

local function fail(fmt, ...)
  error(string.format(fmt, ...), 0)
end

-- Equal as config values: NaN equals NaN (it is the same value read back).
local function same(a, b)
  if type(a) == "number" and type(b) == "number" then
    return a == b or (a ~= a and b ~= b)
  end
  return a == b
end

local function check_refusal(what, t, msg, code)
  if t ~= nil then
    return false
  end
  if type(msg) ~= "string" or msg:sub(1, #INVALID + 2) ~= INVALID .. ": " or code ~= INVALID then
    fail("%s: a refusal must be nil, 'invalid argument: ...', 'invalid argument'; got %s, %s",
      what, tostring(msg), tostring(code))
  end
  return true
end

local function check_setting(k, v)
  if type(k) ~= "string" then
    fail("accepted a non-string key %s", tostring(k))
  end
  if k == "mode" then
    if not config.MODES[v] then
      fail("accepted mode %s", tostring(v))
    end
    return
  end
  local s = config.LUA_SETTINGS[k]
  if not s then
    if type(v) == "table" then
      fail("accepted a table for engine setting %s", k)
    end
    return
  end
  local vt = type(v)
  if s.type == "integer" then
    if math.type(v) ~= "integer" then
      fail("%s: accepted %s %s for an integer setting", k, vt, tostring(v))
    end
  elseif s.type == "number" then
    if vt ~= "number" then
      fail("%s: accepted a %s for a number setting", k, vt)
    end
  elseif s.type == "boolean" then
    if vt ~= "boolean" then
      fail("%s: accepted a %s for a boolean setting", k, vt)
    end
  elseif s.type == "enum" then
    local found = false
    for _, ok in ipairs(s.values) do
      found = found or v == ok
    end
    if not found then
      fail("%s: accepted %s, not one of its values", k, tostring(v))
    end
  end
  if s.min and not (v >= s.min and v <= s.max) then
    fail("%s: accepted %s, outside %s..%s", k, tostring(v), tostring(s.min), tostring(s.max))
  end
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function check_round_trip(t, dir)
  local text = config.encode_file(t)
  local path = dir .. "/roundtrip.json"
  write(path, text)
  local ok, t2, msg = pcall(config.read_file, path)
  if not ok then
    fail("read_file raised on encode_file's output: %s", tostring(t2))
  end
  if t2 == nil then
    fail("encode_file's output is refused by read_file: %s\n%s", tostring(msg), text)
  end
  for k, v in pairs(t) do
    if not same(v, t2[k]) then
      fail("round trip changed %s: %s -> %s\n%s", k, tostring(v), tostring(t2[k]), text)
    end
  end
  for k in pairs(t2) do
    if t[k] == nil then
      fail("round trip added %s", k)
    end
  end
end

local function check_load(path, dir, engine_set)
  local ok, cfg, msg, code = pcall(config.load, { data = dir, file = path, getenv = function() end })
  if not ok then
    fail("config.load raised: %s", tostring(cfg))
  end
  if check_refusal("config.load", cfg, msg, code) then
    fail("config.load refused a file read_file accepted: %s", tostring(msg))
  end
  local eok, eng = pcall(cfg.engine_options, cfg)
  if not eok then
    fail("engine_options raised: %s", tostring(eng))
  end
  for k, v in pairs(eng) do
    if type(k) ~= "string" or type(v) ~= "string" then
      fail("engine option %s = %s is not a string pair", tostring(k), tostring(v))
    end
    if k ~= "mode" then
      engine_set(eng.mode, k, v)
    end
  end
  local lok, lo = pcall(cfg.log_options, cfg)
  if not lok then
    fail("log_options raised: %s", tostring(lo))
  end
  if math.type(lo.file_max_bytes) ~= "integer" or lo.file_max_bytes <= 0 then
    fail("log_options: file_max_bytes = %s", tostring(lo.file_max_bytes))
  end
end

return function(path, dir, engine_set)
  local ok, t, msg, code = pcall(config.read_file, path)
  if not ok then
    fail("config.read_file raised: %s", tostring(t))
  end
  if check_refusal("config.read_file", t, msg, code) then
    return
  end
  if type(t) ~= "table" then
    fail("config.read_file returned a %s", type(t))
  end
  for k, v in pairs(t) do
    check_setting(k, v)
  end
  check_round_trip(t, dir)
  check_load(path, dir, engine_set)
end
