--- kiwi.log_format: what one log line is. The levels; the JSON line kiwi.log writes (`format_line`:
-- `ts`, `level`, `logger`, `event`, then the fields in key order, every byte outside printable
-- ASCII escaped as \u00XX); the one-line text it writes to stderr; and `pretty`, which turns a
-- received JSON line back into text for people (`kiwi logs`). No state but a timestamp cache;
-- kiwi.log re-exports the public parts.
-- @module kiwi.log_format

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

-- ---- the stderr text ----------------------------------------------------------------------------

--- The text of one event for stderr (without the newline): `LEVEL logger event key=value ...`.
function M.stderr_text(level, logger, event, fields)
  local parts = { format("%-5s %s %s", level:upper(), logger, event) }
  if fields then
    for _, k in ipairs(sorted_keys(fields)) do
      local v = fields[k]
      parts[#parts + 1] = k .. "=" .. (type(v) == "table" and encode(v, 1) or tostring(v))
    end
  end
  return concat(parts, " ")
end

-- ---- reading a line back: `kiwi logs` -----------------------------------------------------------

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

return M
