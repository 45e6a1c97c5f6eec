-- spec/kiwi_crash_spec.lua: process crashes lose no acknowledged write (DESIGN §4).
--
-- 20 cycles on one directory: a child lua5.4 opens the db and writes in a loop (puts of new and
-- old keys, deletes, batches; sync=true and sync=false alternating), printing a "try" line before
-- each write and an "ack" line after it returns; the parent SIGKILLs it after a random 50-500 ms,
-- reopens the db and checks that every acknowledged write is there (deleted keys absent, no extra
-- keys). The one write in flight at the kill (a "try" without "ack") may be there or not, but
-- atomically: all of its operations or none. The acknowledged state accumulates over the cycles.
--
-- Reproduce a run with KIWI_CRASH_SEED=<seed> (printed on failure); KIWI_CRASH_VERBOSE=1 prints
-- each cycle's counts.
local kiwi = require("kiwi")
local helper = require("spec.helper")

local CYCLES = 20
local OPTS = { mode = "dev", max_memtable_entries = 300 }

-- One line per write: "try|ack <op> <key> <value> [<op> <key> <value> ...]"; op is put or del
-- (whose value is "-"). A batch is one line, so its ack is atomic on the pipe.
local WRITER = [[
local kiwi = require("kiwi")
io.stdout:setvbuf("line")
local dir, cycle, seed = arg[1], tonumber(arg[2]), tonumber(arg[3])
math.randomseed(seed)
local db = assert(kiwi.open(dir, { mode = "dev", max_memtable_entries = 300 }))
local function old_key()
  return string.format("k%02d_%04d", math.random(0, cycle), math.random(1, 150))
end
local n = 0
while true do
  n = n + 1
  local wopts = { sync = n % 2 == 0 }
  local r = math.random()
  local ops = {}
  if r < 0.55 then
    ops[1] = { "put", string.format("k%02d_%04d", cycle, n), string.format("v%d.%d", cycle, n) }
  elseif r < 0.7 then
    ops[1] = { "put", old_key(), string.format("o%d.%d", cycle, n) }
  elseif r < 0.85 then
    ops[1] = { "del", old_key(), "-" }
  else
    for i = 1, math.random(2, 6) do
      if math.random() < 0.75 then
        ops[i] = { "put", old_key(), string.format("b%d.%d.%d", cycle, n, i) }
      else
        ops[i] = { "del", old_key(), "-" }
      end
    end
  end
  local words = {}
  for _, op in ipairs(ops) do
    words[#words + 1] = table.concat(op, " ")
  end
  local line = table.concat(words, " ")
  io.stdout:write("try ", line, "\n")
  local ok, msg
  if #ops == 1 and ops[1][1] == "put" then
    ok, msg = db:put(ops[1][2], ops[1][3], wopts)
  elseif #ops == 1 then
    ok, msg = db:delete(ops[1][2], wopts)
  else
    local b = kiwi.batch()
    for _, op in ipairs(ops) do
      if op[1] == "put" then b:put(op[2], op[3]) else b:delete(op[2]) end
    end
    ok, msg = db:write(b, wopts)
  end
  if not ok then
    io.stderr:write("write failed: ", tostring(msg), "\n")
    os.exit(3)
  end
  io.stdout:write("ack ", line, "\n")
end
]]

local function parse_ops(rest)
  local ops = {}
  for op, key, value in rest:gmatch("(%a+) (%S+) (%S+)") do
    ops[#ops + 1] = { op, key, value }
  end
  return ops
end

local function apply(model, ops)
  for _, op in ipairs(ops) do
    if op[1] == "put" then
      model[op[2]] = op[3]
    else
      model[op[2]] = nil
    end
  end
end

-- Runs one child until the kill; returns its stdout, stderr, exit code and signal.
local function run_child(script, dir, cycle, seed, delay_ms)
  return helper.run_and_kill(script, { dir, cycle, seed }, delay_ms)
end

describe("kiwi crash #crash", function()
  it("keeps every acknowledged write across 20 SIGKILLs", function()
    local dir = helper.tmpdir()
    local data = dir .. "/db"
    local script = helper.write_script(dir, "writer", WRITER)
    local seed = tonumber(os.getenv("KIWI_CRASH_SEED")) or os.time()
    math.randomseed(seed)
    local model = {}
    local acked_total = 0
    for cycle = 1, CYCLES do
      local where = string.format("seed %d cycle %d", seed, cycle)
      local out, err, code, signal = run_child(script, data, cycle, seed + cycle,
        math.random(50, 500))
      assert(signal == 9, where .. ": the child was not killed (exit " .. tostring(code)
        .. ", signal " .. tostring(signal) .. "): " .. err)
      -- complete lines only: the kill may cut the last one
      local pending
      for line in out:gmatch("([^\n]*)\n") do
        local kind, rest = line:match("^(%a+) (.*)$")
        if kind == "try" then
          pending = parse_ops(rest)
        elseif kind == "ack" then
          apply(model, parse_ops(rest))
          acked_total = acked_total + 1
          pending = nil
        else
          error(where .. ": bad line from child: " .. line)
        end
      end

      if os.getenv("KIWI_CRASH_VERBOSE") then
        io.stderr:write(string.format("%s: %d acked so far, in flight: %s\n", where, acked_total,
          pending and #pending .. " ops" or "none"))
      end
      local db, msg = kiwi.open(data, OPTS)
      assert(db, where .. ": reopen failed: " .. tostring(msg))
      if pending then
        -- the write in flight: all of it or none of it
        local keys, after, all_old, all_new = {}, {}, true, true
        for _, op in ipairs(pending) do
          keys[op[2]] = true
          after[op[2]] = model[op[2]] or false
        end
        for _, op in ipairs(pending) do -- false: deleted
          after[op[2]] = op[1] == "put" and op[3] or false
        end
        for k in pairs(keys) do
          local v = db:get(k)
          if v ~= model[k] then
            all_old = false
          end
          if v ~= (after[k] or nil) then
            all_new = false
          end
        end
        assert(all_old or all_new, where .. ": the write in flight was applied in part")
        for k in pairs(keys) do
          model[k] = db:get(k)
        end
      end
      local count = 0
      for k, v in db:scan() do
        count = count + 1
        if model[k] ~= v then
          error(string.format("%s: key %s is %q in the db, %q acknowledged", where, k, v,
            tostring(model[k])))
        end
      end
      local expected = 0
      for k, v in pairs(model) do
        expected = expected + 1
        local got = db:get(k)
        if got ~= v then
          error(string.format("%s: acknowledged %s = %s, get returns %s", where, k, v,
            tostring(got)))
        end
      end
      assert.equal(expected, count, where .. ": live key count")
      assert.is_true(db:close())
    end
    assert.is_true(acked_total > 0, "children acknowledged writes")
  end)
end)
