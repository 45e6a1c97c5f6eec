-- spec/kiwi_async_close_spec.lua: requests in flight when something ends around them (DESIGN §4-§5,
-- issue 4): a task that fails mid-write leaves the others going; closing the db from a task with
-- writes, reads, scans or a flush in flight finishes or refuses each of them cleanly; a snapshot
-- released and a batch in use stay valid for the request that holds them; and a SIGKILL of a
-- process running writer tasks loses no write that was acknowledged to a task. Split from
-- spec/kiwi_async_spec.lua (throughput, the loop, yields, events).
local kiwi = require("kiwi")
local uv = require("luv")
local helper = require("spec.helper")

local open = helper.open_db

local function quiet_errors(fn)
  local old = kiwi.on_task_error(function() end)
  local ok, err = pcall(fn)
  kiwi.on_task_error(old)
  assert(ok, err)
end

describe("kiwi async #async", function()
  after_each(function()
    assert.equal(0, require("kiwi.core").pending(), "requests left in flight")
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
  local out, _, _, signal = helper.run_and_kill(script, { dir, tasks, tag }, delay_ms, true)
  return out, signal
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
