--- kiwi.repl_commands: the REPL's commands (put, get, scan, mem, disk, stats, config, trace,
-- help, ...): what each one does and how it shows its result (bytes shown safely, aligned
-- tables). Each command is a function(session, args) returning the text to print; kiwi.repl
-- splits the line, checks the argument count against the command's min/max and calls it.
-- Free of terminal I/O.
-- @module kiwi.repl_commands

local log = require("kiwi.log")

local byte = string.byte
local concat = table.concat
local format = string.format
local gsub = string.gsub
local ipairs = ipairs
local math_type = math.type
local pairs = pairs
local rep = string.rep
local sort = table.sort
local tonumber = tonumber
local tostring = tostring
local type = type

local M = {}

M.DEFAULT_SCAN_LIMIT = 100
M.CELL_WIDTH = 60 -- longer cells in tables are cut with "..."

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

-- ---- commands -----------------------------------------------------------------------------------

--- The text of a failure: "error: " and the message.
function M.fail(msg)
  return "error: " .. tostring(msg)
end

local fail = M.fail

--- The text of a call with the wrong number of arguments.
-- @tparam table cmd from M.find
function M.usage(cmd)
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

local commands, order = {}, {} -- by name; the names in the order of `help`

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

--- The command called `name`, or nil: { name, usage, summary, fn(session, args) -> text, min,
-- max } (min and max count the arguments).
function M.find(name)
  return commands[name]
end

return M
