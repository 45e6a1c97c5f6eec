--- kiwi.bench_workloads: the workloads kiwi.bench times: their data (values, keys made before the
-- timed loops or formatted per operation) and their operations (fillseq, fillrandom, overwrite,
-- fillsync, fillbatch, readrandom, readseq), each run directly or split among tasks, plus the
-- tables that say which workloads start from a fresh db, write, or use keys made beforehand.
-- kiwi.bench (running the ways and rounds, the C figures, the reports) is its only user; the
-- method is described there and in docs/benchmarks.md.
-- @module kiwi.bench_workloads

local kiwi = require("kiwi")

local M = {}

local DEFAULT_WORKLOADS = { "fillseq", "fillrandom", "overwrite", "readrandom", "readseq",
  "fillsync", "fillbatch" }
local FRESH = { fillseq = true, fillrandom = true, fillbatch = true, fillsync = true }
local WRITES = { fillseq = true, fillrandom = true, overwrite = true, fillbatch = true,
  fillsync = true }
local RANDOM = { fillrandom = true, overwrite = true, fillsync = true, readrandom = true }
local KEYED = { fillseq = true, fillbatch = true }
local BATCH = 1000

local fmt = string.format

-- ---- data -----------------------------------------------------------------------------------------

-- Values: 4096 precomputed slices of a pool of printable pseudo-random bytes, each made of a half
-- and its repetition (so they compress to about 50%, like db_bench's). Precomputing keeps the
-- cost of making a value out of the timed loop, as the C bench's pointer into its pool does:
-- operation i puts vals[i % VALUES], a table index in the loop (a closure call cost ~60
-- instructions more a put).
local VALUES = 4096

local function value_maker(size)
  local pool = {}
  for i = 1, 65536 do
    pool[i] = string.char(32 + math.random(0, 94))
  end
  pool = table.concat(pool)
  local half = size // 2
  local vals = {}
  for j = 0, VALUES - 1 do
    local off = (j * 7919) % (#pool - size) + 1
    local h = pool:sub(off, off + half - 1)
    vals[j] = h .. h .. pool:sub(off, off + (size - 2 * half) - 1)
  end
  return vals
end

local function format_key(i)
  return fmt("%016d", i)
end

-- Keys by index (0-based: `keys()`) and random keys by operation number (1-based:
-- `random_keys(n)`). With `how` "table" (the default) both are made before the timed loop of the
-- workload that uses them, so a loop pays one table index for its key, as the C bench pays a
-- few dozen instructions (a digit loop, a xorshift step); with "format" each access runs
-- string.format (and math.random) as a naive Lua loop would: ~2,000 instructions, a third of a
-- put. The loops read `keys[i]` and `rk[i]` either way. The tables are dropped after their
-- workload: 100,000 live key strings make the string table big enough to halve readseq's speed
-- (each scanned key is interned: a cache miss into a 1 MiB bucket array).
local function key_source(how, num)
  if how == "format" then
    local keys = setmetatable({}, { __index = function(_, i) return format_key(i) end })
    local random = setmetatable({}, { __index = function()
      return format_key(math.random(0, num - 1))
    end })
    return function() return keys end, function() return random end
  end
  local function keys()
    local t = {}
    for i = 0, num - 1 do
      t[i] = format_key(i)
    end
    return t
  end
  return keys, function(n)
    local rnd, out = math.random, {}
    for i = 1, n do
      out[i] = format_key(rnd(0, num - 1))
    end
    return out
  end
end

-- ---- one workload -----------------------------------------------------------------------------

-- Runs body(first, last, stride) over indices 1..n: directly, or split among `tasks` tasks.
local function split(n, tasks, body)
  if tasks == 1 then
    return body(1, n, 1)
  end
  local ts = {}
  for t = 1, tasks do
    ts[t] = kiwi.spawn(body, t, n, tasks)
  end
  for t = 1, tasks do
    local ok, err = kiwi.wait(ts[t])
    if ok == nil and err ~= nil then
      error(err, 0)
    end
  end
end

local function check(ok, msg)
  if not ok then
    error("kiwi.bench: " .. tostring(msg), 0)
  end
  return ok
end

-- The operations of each workload: returns the number of ops done.
local ops = {}

-- n puts of keys[1 + shift .. n + shift] (made before the timer starts: c.keys in key order,
-- 0-based, or c.random_keys' table), operation i putting value i.
local function random_puts(c, tasks, n, wo, keys, shift)
  shift = shift or 0
  split(n, tasks, function(first, last, stride)
    local put, db, vals = c.db.put, c.db, c.values
    for i = first, last, stride do
      local ok, msg = put(db, keys[i + shift], vals[i % VALUES], wo)
      if not ok then
        check(ok, msg)
      end
    end
    return true
  end)
  return n
end

function ops.fillseq(c, tasks)
  return random_puts(c, tasks, c.num, c.nosync, c.keys, -1)
end

function ops.fillrandom(c, tasks)
  return random_puts(c, tasks, c.num, c.nosync, c.rk)
end

ops.overwrite = ops.fillrandom

function ops.fillsync(c, tasks)
  return random_puts(c, tasks, c.sync_num, c.sync, c.rk)
end

function ops.fillbatch(c, tasks)
  local nbatches = (c.num + BATCH - 1) // BATCH
  split(nbatches, tasks, function(first, last, stride)
    local b = kiwi.batch()
    local keys, vals = c.keys, c.values
    for j = first, last, stride do
      b:clear()
      for i = (j - 1) * BATCH, math.min(j * BATCH, c.num) - 1 do
        b:put(keys[i], vals[i % VALUES])
      end
      check(c.db:write(b, c.nosync))
    end
    b:close()
    return true
  end)
  return c.num
end

function ops.readrandom(c, tasks)
  local found = 0
  local keys = c.rk
  split(c.num, tasks, function(first, last, stride)
    local get, db = c.db.get, c.db
    for i = first, last, stride do
      local v, msg = get(db, keys[i])
      if v ~= nil then
        found = found + 1
      elseif msg ~= nil then
        check(nil, msg)
      end
    end
    return true
  end)
  c.note = fmt("%d of %d found", found, c.num)
  return c.num
end

function ops.readseq(c, tasks)
  local n = 0
  split(tasks, tasks, function(first, _, _)
    -- task t scans keys [num*(t-1)/tasks, num*t/tasks): disjoint slices of the key range
    local lo = tasks > 1 and format_key(c.num * (first - 1) // tasks) or nil
    local hi = tasks > 1 and first < tasks and format_key(c.num * first // tasks) or nil
    for _ in c.db:scan(lo, hi) do
      n = n + 1
    end
    return true
  end)
  return n
end

-- ---- for kiwi.bench -----------------------------------------------------------------------------

M.DEFAULT_WORKLOADS = DEFAULT_WORKLOADS
M.FRESH = FRESH
M.WRITES = WRITES
M.RANDOM = RANDOM
M.KEYED = KEYED
M.value_maker = value_maker
M.key_source = key_source
M.check = check
M.ops = ops
M.random_puts = random_puts

return M
