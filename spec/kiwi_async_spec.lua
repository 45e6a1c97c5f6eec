-- spec/kiwi_async_spec.lua: the db inside tasks (DESIGN §4-§5, issue 4): many tasks share group
-- commits, the loop never blocks on the engine, memory hits do not yield, tasks fail alone, close
-- with writes in flight is clean, engine events reach Lua, and a SIGKILL loses no write that was
-- acknowledged to a task. The API in both modes is checked by the api/scan/errors specs.
local kiwi = require("kiwi")
local uv = require("luv")
local helper = require("spec.helper")

local function open(dir, opts)
  opts = opts or {}
  opts.mode = opts.mode or "dev"
  local db, msg, code = kiwi.open(dir, opts)
  assert(db, tostring(msg) .. " (" .. tostring(code) .. ")")
  return db
end

local function quiet_errors(fn)
  local old = kiwi.on_task_error(function() end)
  local ok, err = pcall(fn)
  kiwi.on_task_error(old)
  assert(ok, err)
end

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

  it("keeps other tasks going when one fails mid-write", function()
    local dir = helper.tmpdir()
    quiet_errors(function()
      helper.in_task(function()
        local db = open(dir)
        local ts = {}
        for i = 1, 50 do
          ts[i] = kiwi.spawn(function()
            for j = 1, 20 do
              assert(db:put(i .. ":" .. j, "v", { sync = j % 2 == 0 }))
              if i == 7 and j == 10 then
                error("task 7 gives up")
              end
            end
            return i
          end)
        end
        for i = 1, 50 do
          local r, err = kiwi.wait(ts[i])
          if i == 7 then
            assert.is_nil(r)
            assert.matches("task 7 gives up", err)
          else
            assert.equal(i, r)
          end
        end
        assert.equal("v", db:get("50:20"))
        assert.equal("v", db:get("7:10"))
        assert.is_nil(db:get("7:11"))
        assert.is_true(db:close())
      end)
    end)
  end)

  it("finishes or refuses writes in flight when a task closes the db", function()
    local dir = helper.tmpdir()
    local acked = {}
    quiet_errors(function()
      helper.in_task(function()
        local db = open(dir, { mode = "prod" })
        local writers = {}
        for i = 1, 200 do
          writers[i] = kiwi.spawn(function()
            for j = 1, 1000 do
              local k = string.format("c%03d:%04d", i, j)
              local ok, res = pcall(db.put, db, k, "v", { sync = j % 3 == 0 })
              if not ok then
                assert.matches("attempt to use a closed kiwi db", res)
                return j
              end
              assert.is_true(res)
              acked[#acked + 1] = k
            end
          end)
        end
        kiwi.sleep(20)
        local scan_step = db:scan()
        scan_step()
        local snap = db:snapshot()
        assert.is_true(db:close())
        assert.is_true(db:is_closed())
        assert.has_error(scan_step, "attempt to use a kiwi iter whose db is closed")
        assert.has_error(function() snap:sequence() end,
          "attempt to use a kiwi snapshot whose db is closed")
        for i = 1, 200 do
          assert.is_number((kiwi.wait(writers[i])))
        end
      end)
    end)
    assert.is_true(#acked > 0)
    local db = open(dir, { mode = "prod" })
    for _, k in ipairs(acked) do
      if db:get(k) ~= "v" then
        error("acknowledged write lost: " .. k)
      end
    end
    db:close()
  end)

  it("closes the db with reads, scans and a flush in flight", function()
    local dir = helper.tmpdir()
    local db = open(dir, { max_memtable_entries = 1000 })
    for i = 1, 5000 do
      db:put(string.format("r%05d", i), "v" .. i)
    end
    db:flush()
    quiet_errors(function()
      helper.in_task(function()
        local readers = {}
        for i = 1, 20 do
          readers[i] = kiwi.spawn(function()
            local n = 0
            for _ = 1, 50 do
              local ok, v = pcall(db.get, db, string.format("r%05d", (i * 97) % 5000 + 1))
              if not ok then
                return n
              end
              assert.is_string(v)
              n = n + 1
              local ok2 = pcall(function()
                for _ in db:scan(nil, nil, { limit = 300 }) do end
              end)
              if not ok2 then
                return n
              end
            end
            return n
          end)
        end
        kiwi.spawn(function() pcall(db.flush, db) end)
        kiwi.sleep(5)
        assert.is_true(db:close())
        for i = 1, 20 do
          assert.is_number((kiwi.wait(readers[i])))
        end
      end)
    end)
    open(dir):close()
  end)

  it("closes in a task while a flush runs on a worker, every time", function()
    -- The close job waits on its worker until it is the db's only job; the flush ending must
    -- wake it. A watchdog turns a hang into a failure (luv exits on an error in a callback).
    local watchdog = uv.new_timer()
    watchdog:start(20000, 0, function()
      error("watchdog: a close waiting for a flush hung")
    end)
    watchdog:unref()
    for round = 1, 5 do
      local dir = helper.tmpdir()
      helper.in_task(function()
        local db = open(dir, { max_memtable_entries = 1000000 })
        local b = kiwi.batch()
        for i = 1, 20000 do
          b:put(string.format("f%06d", i), string.rep("v", 50))
        end
        assert(db:write(b))
        local flusher = kiwi.spawn(function() return db:flush() end)
        kiwi.yield() -- the flush job is on a worker now
        assert.is_true(db:close())
        assert.is_true(kiwi.wait(flusher), "round " .. round)
      end)
      local db = open(dir)
      assert.equal(string.rep("v", 50), db:get("f020000"))
      db:close()
    end
    watchdog:close()
  end)

  it("keeps a snapshot valid for reads in flight when it is released", function()
    local dir = helper.tmpdir()
    helper.in_task(function()
      local db = open(dir)
      assert(db:put("k", "old"))
      assert(db:flush())
      local snap = db:snapshot()
      assert(db:put("k", "new"))
      assert(db:flush())
      local t = kiwi.spawn(function() return db:get("k", { snapshot = snap }) end)
      kiwi.spawn(function() snap:release() end)
      assert.equal("old", kiwi.wait(t))
      assert.is_true(snap:is_released())
      assert.equal("new", db:get("k"))
      assert.is_true(db:close())
    end)
  end)

  it("guards a batch while a task writes it", function()
    helper.in_task(function()
      local db = open(helper.tmpdir())
      local b = kiwi.batch()
      b:put("a", "1"):put("b", "2")
      local t = kiwi.spawn(function() return db:write(b, { sync = true }) end)
      kiwi.yield() -- t is now waiting for its write
      assert.equal("waiting", t:status())
      assert.has_error(function() b:put("c", "3") end,
        "attempt to change a kiwi batch while a task writes it")
      assert.has_error(function() db:write(b) end,
        "attempt to write a kiwi batch that a task is writing")
      b:close() -- deferred until the write is delivered
      assert.is_true(kiwi.wait(t))
      assert.matches("closed", tostring(b))
      assert.equal("2", db:get("b"))
      assert.is_true(db:write(kiwi.batch())) -- empty: nothing to wait for
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

-- ---- SIGKILL of a process running writer tasks ---------------------------------------------------

-- The child runs `tasks` writer tasks; each writes its own keys in a loop (sync and not, puts and
-- batches) and prints "ack <key> <value>" for every write acknowledged to it.
local WRITER = [[
local kiwi = require("kiwi")
io.stdout:setvbuf("line")
local dir, tasks = arg[1], tonumber(arg[2])
kiwi.run(function()
  local db = assert(kiwi.open(dir, { mode = "dev", max_memtable_entries = 500 }))
  for t = 1, tasks do
    kiwi.spawn(function()
      local n = 0
      while true do
        n = n + 1
        local k = string.format("%s_w%03d_%06d", arg[3], t, n) -- unique across cycles
        local v = string.format("%s.%d", arg[3], n)
        if n % 5 == 0 then
          local b = kiwi.batch()
          b:put(k, v)
          b:put(k .. "b", v)
          assert(db:write(b, { sync = n % 2 == 0 }))
          io.stdout:write("ack ", k, "b ", v, "\n")
        else
          assert(db:put(k, v, { sync = n % 2 == 0 }))
        end
        io.stdout:write("ack ", k, " ", v, "\n")
      end
    end)
  end
end)
]]

local function run_child(script, dir, tasks, tag, delay_ms)
  local out = {}
  local stdout = uv.new_pipe(false)
  local exited, signal
  local handle
  handle = assert(uv.spawn(helper.lua_bin, {
    args = { script, dir, tostring(tasks), tag },
    stdio = { nil, stdout, 2 },
    env = helper.child_env(),
  }, function(_, s)
    exited, signal = true, s
    handle:close()
  end))
  stdout:read_start(function(err, data)
    assert(not err, err)
    if data then
      out[#out + 1] = data
    else
      stdout:close()
    end
  end)
  local timer = uv.new_timer()
  timer:start(delay_ms, 0, function()
    timer:close()
    if not exited then
      uv.process_kill(handle, "sigkill")
    end
  end)
  uv.run()
  return table.concat(out), signal
end

describe("kiwi async crash #crash", function()
  it("keeps every write acknowledged to a task across SIGKILLs", function()
    local dir = helper.tmpdir()
    local data = dir .. "/db"
    local script = helper.write_script(dir, "writer", WRITER)
    local acked, total = {}, 0
    for cycle = 1, 5 do
      local out, signal = run_child(script, data, 64, "c" .. cycle, 300 + cycle * 60)
      assert.equal(9, signal, "the child was not killed: " .. out:sub(-500))
      for k, v in out:gmatch("ack (%S+) (%S+)\n") do
        acked[k] = v
        total = total + 1
      end
      local db = open(data, { max_memtable_entries = 500 })
      for k, v in pairs(acked) do
        local got = db:get(k)
        if got ~= v then
          error(string.format("cycle %d: acknowledged %s = %s, found %s", cycle, k, v,
            tostring(got)))
        end
      end
      assert.is_true(db:close())
    end
    assert.is_true(total > 500, "only " .. total .. " acknowledged writes")
  end)
end)
