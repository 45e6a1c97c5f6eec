-- spec/kiwi_async_spec.lua: the db inside tasks (DESIGN §4-§5, issue 4): many tasks share group
-- commits, the loop never blocks on the engine, memory hits do not yield, and engine events reach
-- Lua. Tasks failing, closing with requests in flight and SIGKILLs of writer tasks are in
-- spec/kiwi_async_close_spec.lua. The API in both modes is checked by the api/scan/errors specs.
local kiwi = require("kiwi")
local uv = require("luv")
local helper = require("spec.helper")

local open = helper.open_db

-- True if `call` yielded the current task.
local function yields(call)
  local t = kiwi.current()
  local before = t:resumes()
  call()
  return t:resumes() > before
end

describe("kiwi async #async", function()
  after_each(function()
    assert.equal(0, require("kiwi.core").pending(), "requests left in flight")
  end)

  it("lets 1,000 tasks doing 100 sync puts each share fsyncs", function()
    local dir = helper.tmpdir()
    local tasks, per = 1000, 100
    local writes = tasks * per
    local stats0, stats1
    local t0 = uv.hrtime()
    helper.in_task(function()
      local db = open(dir, { mode = "prod" })
      stats0 = db:stats()
      local ts = {}
      for i = 1, tasks do
        ts[i] = kiwi.spawn(function()
          for j = 1, per do
            local ok, msg = db:put(string.format("t%04d:%03d", i, j), i .. "/" .. j, { sync = true })
            assert(ok, msg)
          end
          return true
        end)
      end
      for i = 1, tasks do
        assert(kiwi.wait(ts[i]))
      end
      stats1 = db:stats()
      assert.is_true(db:close())
    end)
    local secs = (uv.hrtime() - t0) / 1e9
    local syncs = stats1.wal_syncs - stats0.wal_syncs
    print(string.format("\n  1000 tasks x 100 sync puts: %.2f s, %.0f writes/s, %d fsyncs, "
      .. "%.4f fsyncs per write, %d WAL writes", secs, writes / secs, syncs, syncs / writes,
      stats1.wal_writes - stats0.wal_writes))
    assert.is_true(syncs > 0)
    assert.is_true(syncs < writes / 10, syncs .. " fsyncs for " .. writes .. " writes")
    local db = open(dir, { mode = "prod" })
    for i = 1, tasks do
      for j = 1, per do
        local k = string.format("t%04d:%03d", i, j)
        if db:get(k) ~= i .. "/" .. j then
          error("lost " .. k)
        end
      end
    end
    db:close()
  end)

  -- The worst gap between ticks of a 5 ms luv timer while `busy` runs as a task.
  local function worst_gap(busy)
    local worst, ticks = 0, 0
    helper.in_task(function()
      local last = uv.hrtime()
      local timer = uv.new_timer()
      timer:start(5, 5, function()
        local now = uv.hrtime()
        worst = math.max(worst, (now - last) / 1e6)
        last = now
        ticks = ticks + 1
      end)
      local ok, err = pcall(busy)
      timer:close()
      assert(ok, err)
    end)
    return worst, ticks
  end

  -- What this shared machine does to a loop kept as busy by plain Lua: 16 tasks doing 0.5 ms
  -- slices of CPU work for ~150 ms, while a second thread (a luv worker) spins as the engine's
  -- commit thread does. The scheduler's share of a gap, not kiwi's.
  local function busy_baseline()
    return worst_gap(function()
      local deadline = uv.hrtime() + 150e6
      local spinning = true
      local work = uv.new_work(function(ms)
        local luv = require("luv")
        local t = luv.hrtime()
        while luv.hrtime() - t < ms * 1e6 do end
        return true
      end, function() spinning = false end)
      work:queue(150)
      local ts = {}
      for i = 1, 16 do
        ts[i] = kiwi.spawn(function()
          while uv.hrtime() < deadline do
            local t = uv.hrtime()
            while uv.hrtime() - t < 0.5e6 do end
            kiwi.yield()
          end
        end)
      end
      kiwi.wait(table.unpack(ts))
      while spinning do
        kiwi.sleep(5)
      end
    end)
  end

  it("keeps a 5 ms luv timer ticking while 10,000 durable writes are in flight", function()
    -- Gaps on a loaded 2-core machine are mostly the scheduler's (engine threads, and whatever
    -- else runs, compete with the loop thread for two cores): up to 3 attempts, each next to a
    -- baseline. The bound is what separates "never blocked" from "blocked": an implementation
    -- that waited for the WAL on the loop thread would stall for seconds (10,000 fsyncs). What
    -- the loop does in a gap, and the measured figures, are in docs/internals/binding.md ("The
    -- loop under load"), not asserted here.
    local report = {}
    local passed = false
    for _ = 1, 3 do
      local dir = helper.tmpdir()
      local busy = busy_baseline()
      local worst, ticks = worst_gap(function()
        local db = open(dir, { mode = "prod" })
        local ts = {}
        for i = 1, 10000 do
          ts[i] = kiwi.spawn(function()
            return db:put(string.format("d%05d", i), "v", { sync = true })
          end)
          if i % 250 == 0 then
            kiwi.yield() -- the spawning loop itself is plain Lua (~4 us a spawn): let others run
          end
        end
        for i = 1, 10000 do
          assert(kiwi.wait(ts[i]))
          if i % 250 == 0 then
            kiwi.yield() -- the same for this plain-Lua loop over finished tasks
          end
        end
        assert.equal("v", db:get("d09999"))
        assert.is_true(db:close())
      end)
      assert.is_true(ticks > 0)
      report[#report + 1] = string.format("%.1f ms (%d ticks; busy baseline %.1f ms)", worst,
        ticks, busy)
      if worst < 250 + busy then
        passed = true
        break
      end
    end
    print("\n  10,000 durable writes from tasks, worst gap of a 5 ms timer: "
      .. table.concat(report, "; "))
    assert.is_true(passed, "the loop was blocked: " .. table.concat(report, "; "))
  end)

  it("delivers completions for about a millisecond per loop iteration", function()
    -- five durable puts complete together (one group commit); each task then works 3 ms: a
    -- 1 ms timer ticks between those deliveries, not only after all five
    local dir = helper.tmpdir()
    local order = {}
    helper.in_task(function()
      local db = open(dir, { mode = "prod" })
      local timer = uv.new_timer()
      timer:start(1, 1, function()
        if order[#order] ~= "timer" then
          order[#order + 1] = "timer"
        end
      end)
      local ts = {}
      for i = 1, 5 do
        ts[i] = kiwi.spawn(function()
          assert(db:put("k" .. i, "v", { sync = true }))
          local t0 = uv.hrtime()
          while uv.hrtime() - t0 < 3e6 do end
          order[#order + 1] = "task"
        end)
      end
      kiwi.wait(table.unpack(ts))
      timer:close()
      assert.is_true(db:close())
    end)
    local tasks, between = 0, 0
    for i, what in ipairs(order) do
      if what == "task" then
        tasks = tasks + 1
        if tasks > 1 and order[i - 1] == "timer" then
          between = between + 1
        end
      end
    end
    assert.equal(5, tasks)
    assert.equal(4, between, table.concat(order, " "))
  end)

  it("answers from memory without yielding and yields for SSTable reads that may wait", function()
    local dir = helper.tmpdir()
    helper.in_task(function()
      local db = open(dir, { max_memtable_entries = 100000 })
      for i = 1, 200 do
        assert(db:put(string.format("m%03d", i), "mem" .. i))
      end
      local v
      assert.is_false(yields(function() v = db:get("m007") end))
      assert.equal("mem7", v)
      assert.is_false(yields(function() v = db:get("absent") end)) -- no SSTable can hold it
      assert.is_nil(v)
      assert.is_true(db:flush())
      -- the SSTable just written is in memory (filter and index cached, block in the page cache)
      assert.is_false(yields(function() v = db:get("m150") end))
      assert.equal("mem150", v)
      -- a filter read from the file's mapping may wait for the disk: that read goes to a worker
      assert.is_true(db:update_config("block_cache_bloom_mb", "0"))
      assert.is_true(yields(function() v = db:get("m150") end))
      assert.equal("mem150", v)
      assert.is_true(db:update_config("block_cache_bloom_mb", "2"))
      assert.is_true(db:put("m150", "newer"))
      assert.is_false(yields(function() v = db:get("m150") end)) -- the memtable has it again
      assert.equal("newer", v)
      assert.is_false(yields(function() v = db:put("w", "1", { sync = false }) end)) -- inline
      assert.is_true(v)
      assert.is_true(yields(function() v = db:put("w", "2", { sync = true }) end)) -- an fsync
      assert.is_true(v)
      assert.is_false(yields(function() v = db:delete("w") end)) -- sync_writes is false
      assert.is_true(v)
      local b = kiwi.batch():put("b1", "x"):put("b2", "y")
      assert.is_false(yields(function() v = db:write(b) end))
      assert.is_true(v)
      assert.is_true(yields(function() v = db:write(b, { sync = true }) end))
      assert.is_true(v)
      assert.equal("y", db:get("b2"))
      assert.is_nil(db:get("w"))
      local snap = db:snapshot()
      assert.is_false(yields(function() snap:sequence() end))
      snap:release()
      assert.is_true(db:close())
    end)
  end)

  it("queues a non-sync write behind the writes already waiting, in order", function()
    local dir = helper.tmpdir()
    helper.in_task(function()
      local db = open(dir, { mode = "prod" })
      local order, syncs = {}, {}
      for i = 1, 20 do -- durable writes of one key: queued for the commit thread
        syncs[i] = kiwi.spawn(function()
          assert(db:put("k", "sync" .. i, { sync = true }))
          order[#order + 1] = i
        end)
      end
      kiwi.yield() -- they start and wait
      -- behind queued writers it cannot go in inline: it queues (and yields) behind them
      assert(db:put("k", "last", { sync = false }))
      kiwi.wait(table.unpack(syncs))
      assert.equal(20, #order)
      assert.equal("last", db:get("k")) -- not overtaken by a queued durable write
      assert.is_true(db:close())
    end)
  end)

  it("refuses an oversized write in a task with the blocking message", function()
    local dir = helper.tmpdir()
    local big = string.rep("k", 70000)
    local bdb = open(dir)
    local blocking = { bdb:put(big, "v") }
    assert.is_true(bdb:close())
    assert.equal("invalid argument", blocking[3])
    helper.in_task(function()
      local db = open(dir .. "-t")
      local got = { db:put(big, "v") }
      assert.same(blocking, got)
      local b = kiwi.batch():put(big, "v")
      local w1 = { db:write(b) }
      assert.is_nil(w1[1])
      assert.equal("invalid argument", w1[3])
      assert.is_true(db:close())
    end)
  end)

  it("scans a million-key range in few thread hops", function()
    local dir = helper.tmpdir()
    helper.in_task(function()
      local db = open(dir, { mode = "prod" })
      local b = kiwi.batch()
      for i = 1, 200000 do
        b:put(string.format("s%07d", i), "v")
        if i % 10000 == 0 then
          assert(db:write(b, { sync = false }))
          b:clear()
        end
      end
      assert(db:flush())
      local hops = 0
      local n, prev = 0, ""
      local step = db:scan()
      while true do
        local k
        if yields(function() k = step() end) then
          hops = hops + 1
        end
        if not k then
          break
        end
        assert(k > prev)
        prev = k
        n = n + 1
      end
      assert.equal(200000, n)
      -- 32, 64, ... 1024 pairs per hop: about n / 1024 hops
      assert.is_true(hops < 250, hops .. " hops")
      assert.is_true(db:close())
    end)
  end)

  describe("events", function()
    it("delivers engine events to on_event on the loop, fields decoded", function()
      local dir = helper.tmpdir()
      local seen = {}
      helper.in_task(function()
        local db = open(dir, {
          max_memtable_entries = 100,
          on_event = function(level, event, fields)
            seen[#seen + 1] = { level = level, event = event, fields = fields }
          end,
        })
        for i = 1, 250 do
          assert(db:put(string.format("e%03d", i), "v"))
        end
        assert(db:flush())
        kiwi.sleep(5)
        assert.is_true(db:close())
        kiwi.sleep(5)
      end)
      local names = {}
      for _, e in ipairs(seen) do
        names[e.event] = e
        assert.is_string(e.level)
        assert.is_table(e.fields)
      end
      assert.is_table(names.open)
      assert.is_table(names.flush_end)
      assert.is_table(names.close)
      assert.equal("info", names.flush_end.level)
    end)

    it("queues events for db:poll_events() when no loop runs", function()
      local dir = helper.tmpdir()
      local db = open(dir, { max_memtable_entries = 100 })
      for i = 1, 150 do
        db:put(string.format("p%03d", i), "v")
      end
      db:flush()
      local events = db:poll_events()
      local names = {}
      for _, e in ipairs(events) do
        names[e.event] = true
        assert.is_table(e.fields)
      end
      assert.is_true(names.open)
      assert.is_true(names.flush_end)
      assert.same({}, db:poll_events()) -- taken
      db:close()
      local after = db:poll_events()
      assert.equal("close", after[#after].event)
    end)

    it("delivers to on_event at the end of a blocking call outside the loop", function()
      local dir = helper.tmpdir()
      local seen = {}
      local db = open(dir, {
        on_event = function(_, event)
          seen[#seen + 1] = event
        end,
      })
      assert.equal("open", seen[#seen])
      db:put("a", "1")
      db:flush()
      assert.equal("flush_end", seen[#seen])
      db:close()
      assert.equal("close", seen[#seen])
    end)

    it("counts dropped events and survives a failing handler", function()
      local dir = helper.tmpdir()
      local db = open(dir, { max_memtable_entries = 1 })
      for i = 1, 1500 do -- every put rotates: far more than 1024 events queued
        db:put(string.format("x%05d", i), "v", { sync = false })
      end
      local events = db:poll_events()
      assert.equal("events_dropped", events[1].event)
      assert.is_true(events[1].fields.count > 0)
      db:close()
      local calls = 0
      local db2 = open(helper.tmpdir(), {
        on_event = function()
          calls = calls + 1
          error("handler broke")
        end,
      })
      assert.is_true(db2:put("k", "v"))
      assert.is_true(db2:close())
      assert.is_true(calls >= 2) -- open, close: each failed (reported on stderr), none fatal
    end)
  end)
end)
