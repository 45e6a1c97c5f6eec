-- spec/kiwi_task_spec.lua: the task scheduler of require("kiwi") (lua/kiwi/task.lua): run, spawn,
-- wait, sleep, yield, errors with tracebacks, plain luv callbacks on the same loop, coroutines
-- kiwi did not start, and what happens when the loop runs out of work.
local kiwi = require("kiwi")
local uv = require("luv")
local helper = require("spec.helper")

-- Runs fn with a custom task error handler; returns what the handler saw.
local function with_handler(fn)
  local seen = {}
  local old = kiwi.on_task_error(function(err, t)
    seen[#seen + 1] = { err = err, task = t }
  end)
  local ok, err = pcall(fn)
  kiwi.on_task_error(old)
  assert(ok, err)
  return seen
end

describe("kiwi tasks", function()
  after_each(function()
    assert.equal(0, require("kiwi.core").pending(), "requests left in flight")
  end)

  it("runs a function as a task and returns its results", function()
    local a, b, c = kiwi.run(function(x, y)
      assert.is_not_nil(kiwi.current())
      return x + y, "two", nil
    end, 40, 2)
    assert.equal(42, a)
    assert.equal("two", b)
    assert.is_nil(c)
    assert.is_nil(kiwi.current())
  end)

  it("raises the error of the main task with its traceback", function()
    local ok, err = pcall(kiwi.run, function()
      local function inner()
        error("boom in inner")
      end
      inner()
    end)
    assert.is_false(ok)
    assert.matches("boom in inner", err)
    assert.matches("stack traceback", err)
    assert.matches("inner", err)
    -- a non-string error object is raised as it is
    local obj = setmetatable({}, { __tostring = function() return "obj" end })
    local ok2, err2 = pcall(kiwi.run, function() error(obj) end)
    assert.is_false(ok2)
    assert.equal(obj, err2)
  end)

  it("spawns tasks and waits for their results", function()
    kiwi.run(function()
      local t1 = kiwi.spawn(function(n) kiwi.sleep(5) return n * 2 end, 21)
      local t2 = kiwi.spawn(function() return "x", "y" end)
      assert.equal("kiwi.task", getmetatable(t1).__name)
      assert.equal(42, kiwi.wait(t1))
      local r1, r2 = kiwi.wait(t1, t2)
      assert.same({ 42, n = 1 }, r1)
      assert.same({ "x", "y", n = 2 }, r2)
      assert.is_true(t2:done())
      assert.equal("done", t2:status())
      assert.equal("x", (t2:result()))
    end)
  end)

  it("reports a failed task with its traceback and keeps the others running", function()
    local finished = 0
    local seen = with_handler(function()
      kiwi.run(function()
        for i = 1, 10 do
          kiwi.spawn(function()
            kiwi.sleep(1)
            if i == 5 then
              error("task five broke")
            end
            kiwi.sleep(1)
            finished = finished + 1
          end)
        end
      end)
    end)
    assert.equal(9, finished)
    assert.equal(1, #seen)
    assert.matches("task five broke", seen[1].err)
    assert.matches("stack traceback", seen[1].err)
    assert.equal("failed", seen[1].task:status())
  end)

  it("gives a waiter nil, err for a failed task instead of reporting it", function()
    local seen = with_handler(function()
      kiwi.run(function()
        local t = kiwi.spawn(function() kiwi.sleep(2) error("late failure") end)
        local v, err = kiwi.wait(t)
        assert.is_nil(v)
        assert.matches("late failure", err)
        local r, err2 = t:result()
        assert.is_nil(r)
        assert.equal(err, err2)
      end)
    end)
    assert.equal(0, #seen)
  end)

  it("sleeps without blocking other tasks", function()
    local order = {}
    local t0 = uv.hrtime()
    kiwi.run(function()
      local a = kiwi.spawn(function() kiwi.sleep(30) order[#order + 1] = "a" end)
      local b = kiwi.spawn(function() kiwi.sleep(10) order[#order + 1] = "b" end)
      kiwi.wait(a, b)
    end)
    local ms = (uv.hrtime() - t0) / 1e6
    assert.same({ "b", "a" }, order)
    assert.is_true(ms >= 29 and ms < 1000, "took " .. ms .. " ms")
  end)

  it("interleaves tasks at kiwi.yield", function()
    local trace = {}
    kiwi.run(function()
      local function worker(name)
        for i = 1, 3 do
          trace[#trace + 1] = name .. i
          kiwi.yield()
        end
      end
      kiwi.wait(kiwi.spawn(worker, "a"), kiwi.spawn(worker, "b"))
    end)
    assert.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, trace)
  end)

  it("shares the loop with plain luv timers", function()
    local ticks, spawned = 0, nil
    kiwi.run(function()
      local timer = uv.new_timer()
      timer:start(1, 1, function()
        ticks = ticks + 1
        if ticks == 3 then
          spawned = kiwi.spawn(function() return "from a timer" end)
        end
      end)
      kiwi.sleep(30)
      timer:close()
    end)
    assert.is_true(ticks >= 5, "timer ticked " .. ticks .. " times")
    assert.equal("from a timer", (spawned:result()))
  end)

  it("blocks in a coroutine kiwi did not start, even inside a task", function()
    local db = assert(kiwi.open(helper.tmpdir(), { mode = "dev" }))
    local co = coroutine.wrap(function()
      assert.is_nil(kiwi.current())
      assert.is_true(db:put("plain", "1", { sync = true })) -- blocks: no yield across the wrap
      coroutine.yield("mine")
      return db:get("plain")
    end)
    kiwi.run(function()
      assert.equal("mine", co())
      local inner = coroutine.wrap(function()
        assert.is_true(db:put("inner", "2"))
        return db:get("inner")
      end)
      assert.equal("2", inner())
    end)
    assert.equal("1", co())
    db:close()
  end)

  it("refuses kiwi.run inside a task or a running loop", function()
    kiwi.run(function()
      assert.has_error(function() kiwi.run(function() end) end,
        "kiwi.run: called inside a task (use kiwi.spawn and kiwi.wait)")
    end)
    local err
    local timer = uv.new_timer()
    timer:start(1, 0, function()
      timer:close()
      local ok, e = pcall(kiwi.run, function() end)
      err = not ok and e
    end)
    uv.run()
    assert.matches("already running", err)
  end)

  it("runs spawned tasks when kiwi.wait drives the loop outside a task", function()
    local t = kiwi.spawn(function(a) kiwi.sleep(2) return a .. "!" end, "hi")
    assert.equal("ready", t:status())
    assert.equal("hi!", kiwi.wait(t))
  end)

  it("fails unfinished tasks when the loop runs out of work, closing their scans", function()
    local db = assert(kiwi.open(helper.tmpdir(), { mode = "dev" }))
    for i = 1, 100 do
      db:put(string.format("k%03d", i), "v")
    end
    local iter, waiter
    local seen = with_handler(function()
      local ok, err = pcall(kiwi.run, function()
        local stuck = kiwi.spawn(function()
          local step, _, _, closer = db:scan()
          local it <close> = closer
          iter = it
          step()
          coroutine.yield(require("kiwi.core").WAIT) -- waits for nothing: never woken
        end)
        waiter = kiwi.spawn(function() return kiwi.wait(stuck) end)
        kiwi.wait(waiter)
      end)
      assert.is_false(ok)
      assert.matches("the loop stopped with 3 unfinished task", err)
    end)
    assert.equal(2, #seen) -- the two spawned tasks; the main task's error was raised
    assert.matches("closed", tostring(iter))
    assert.equal("failed", waiter:status())
    assert.is_true(db:close())
  end)

  it("closes the scans of a task that fails", function()
    local db = assert(kiwi.open(helper.tmpdir(), { mode = "dev" }))
    for i = 1, 50 do
      db:put(string.format("k%03d", i), "v")
    end
    local iter
    local seen = with_handler(function()
      kiwi.run(function()
        kiwi.spawn(function()
          local step, state, ctl, closer = db:scan()
          iter = closer
          for k in step, state, ctl, closer do -- the shape of `for k in db:scan()`
            if k == "k010" then
              error("stop")
            end
          end
        end)
      end)
    end)
    assert.equal(1, #seen)
    assert.matches("closed", tostring(iter)) -- coroutine.close ran the for's closing value
    assert.is_true(db:close())
  end)
  it("lets a finished task's coroutine go while its handle keeps the results", function()
    local weak = setmetatable({}, { __mode = "k" })
    local t
    kiwi.run(function()
      t = kiwi.spawn(function()
        weak[coroutine.running()] = true
        return "r1", "r2"
      end)
      kiwi.wait(t)
    end)
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak), "the coroutine of a finished task is still alive")
    assert.equal("done", t:status())
    assert.same({ "r1", "r2" }, { t:result() })
    assert.same({ "r1", "r2" }, { kiwi.wait(t) })
  end)

  it("starts no more ready tasks in one loop iteration once a millisecond went by", function()
    -- three ready tasks of 3 ms each: a 1 ms timer ticks between them, not only after all three
    local order = {}
    kiwi.run(function()
      local timer = uv.new_timer()
      timer:start(1, 1, function()
        if order[#order] ~= "timer" then
          order[#order + 1] = "timer"
        end
      end)
      local ts = {}
      for i = 1, 3 do
        ts[i] = kiwi.spawn(function()
          local t0 = uv.hrtime()
          while uv.hrtime() - t0 < 3e6 do end
          order[#order + 1] = "task" .. i
        end)
      end
      kiwi.wait(table.unpack(ts))
      timer:close()
    end)
    local from = 1
    while order[from] ~= "task1" do
      from = from + 1
    end
    assert.same({ "task1", "timer", "task2", "timer", "task3" }, { table.unpack(order, from, from + 4) })
  end)
end)
