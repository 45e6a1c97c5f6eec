-- spec/kiwi_api_spec.lua: the blocking Lua API of require("kiwi") (DESIGN §5): reads and writes,
-- durability across reopen after every kind of operation, binary-safe keys and values, batches,
-- snapshots, misuse raising, and handle lifetimes (__close, __gc, children of a closed db).
local kiwi = require("kiwi")
local helper = require("spec.helper")
local it = helper.both_modes(it) -- every test runs blocking and inside a task

local open = helper.open_db

local function reopen(db, dir)
  assert.is_true(db:close())
  return open(dir)
end

-- Runs check(db) on the memtable, after a flush (SSTables) and after a reopen; closes the db.
local function check_each_layer(db, dir, check)
  check(db)
  assert.is_true(db:flush())
  check(db)
  db = reopen(db, dir)
  check(db)
  db:close()
end

local function scan_all(db, start, stop, opts)
  local keys, vals = {}, {}
  for k, v in db:scan(start, stop, opts) do
    keys[#keys + 1] = k
    vals[#vals + 1] = v
  end
  return keys, vals
end

describe("kiwi api", function()
  describe("basic operations", function()
    it("puts, gets, deletes and closes", function()
      local dir = helper.tmpdir()
      local db = open(dir)
      assert.is_true(db:put("user:1", "Alice"))
      assert.equal("Alice", db:get("user:1"))
      assert.is_true(db:delete("user:1"))
      assert.is_nil(db:get("user:1"))
      assert.is_true(db:close())
    end)

    it("returns only nil for a missing key", function()
      local db = open(helper.tmpdir())
      assert.equal(1, select("#", db:get("missing")))
      assert.is_nil(db:get("missing"))
      db:close()
    end)

    it("overwrites", function()
      local db = open(helper.tmpdir())
      db:put("k", "v1")
      db:put("k", "v2")
      assert.equal("v2", db:get("k"))
      db:put("k", "")
      assert.equal("", db:get("k"))
      db:close()
    end)

    it("treats a delete of a missing key as success", function()
      local db = open(helper.tmpdir())
      assert.is_true(db:delete("never-written"))
      assert.is_nil(db:get("never-written"))
      db:close()
    end)

    it("accepts write options and read options", function()
      local db = open(helper.tmpdir())
      assert.is_true(db:put("a", "1", { sync = true }))
      assert.is_true(db:put("b", "2", { sync = false }))
      assert.is_true(db:put("c", "3", {}))
      assert.is_true(db:delete("c", { sync = true }))
      assert.equal("1", db:get("a", { fill_cache = false }))
      assert.equal("2", db:get("b", {}))
      db:close()
    end)

    it("opens in prod mode by default", function()
      local dir = helper.tmpdir()
      local db = assert(kiwi.open(dir))
      local cfg = db:config()
      if cfg then
        assert.equal("prod", cfg.mode)
      end
      db:close()
    end)

    it("has __name and __tostring on every handle", function()
      local db = open(helper.tmpdir())
      local snap = db:snapshot()
      local b = kiwi.batch()
      local _, _, _, iter = db:scan()
      assert.matches("^kiwi%.db", tostring(db))
      assert.matches("^kiwi%.snapshot", tostring(snap))
      assert.matches("^kiwi%.batch", tostring(b))
      assert.matches("^kiwi%.iter", tostring(iter))
      assert.equal("kiwi.db", getmetatable(db).__name)
      iter:close()
      snap:release()
      db:close()
      assert.matches("closed", tostring(db))
    end)
  end)

  describe("reopen", function()
    it("sees the same data after every kind of operation", function()
      local dir = helper.tmpdir()
      local db = open(dir)
      local model = {}
      local function check()
        db = reopen(db, dir)
        for k, v in pairs(model) do
          assert.equal(v, db:get(k), "key " .. k)
        end
        local keys = scan_all(db)
        local n = 0
        for _ in pairs(model) do
          n = n + 1
        end
        assert.equal(n, #keys)
      end

      db:put("a", "1"); model.a = "1"; check()              -- put
      db:put("a", "2"); model.a = "2"; check()              -- overwrite
      db:put("b", "x"); db:delete("b"); check()             -- delete
      db:put("c", "3"); model.c = "3"
      db:delete("a"); model.a = nil; check()                -- delete of a live key
      local b = kiwi.batch()
      b:put("d", "4"):put("e", "5"):delete("c")
      assert.is_true(db:write(b)); model.d, model.e, model.c = "4", "5", nil
      check()                                               -- batch
      db:put("f", "6"); model.f = "6"
      assert.is_true(db:flush()); check()                   -- flush
      db:put("d", "44"); model.d = "44"
      db:delete("e"); model.e = nil
      check()                                               -- after flush: overwrite + delete
      if helper.compact(db) then check() end               -- compaction
      db:close()
    end)

    it("keeps every write in both WAL modes, switched live (wal_writes)", function()
      local dir = helper.tmpdir()
      local db = open(dir, { mode = "prod" })
      assert.equal("mapped", db:config().wal_writes) -- the default
      local big = string.rep("\0v", 512 * 1024)      -- a 1 MiB value, NULs included
      db:put("m1", big)
      assert.is_true(db:update_config("wal_writes", "write"))
      assert.equal("write", db:config().wal_writes)
      db:put("m2", "still the mapped WAL")           -- the current WAL keeps its way
      assert.is_true(db:flush())                      -- a new WAL, written with write(2)
      db:put("w1", big)
      db:delete("m2")
      local ok, msg, code = db:update_config("wal_writes", "sometimes")
      assert.is_nil(ok)
      assert.equal("invalid argument", code)
      assert.matches("wal_writes", msg, 1, true)
      db:close()                                     -- the WAL replays at the next open
      db = open(dir, { mode = "prod" })
      assert.equal(big, db:get("m1"))
      assert.equal(big, db:get("w1"))
      assert.is_nil(db:get("m2"))
      db:close()
    end)

    it("keeps every sync write whether sync waits yield or block (sync_waits)", function()
      local dir = helper.tmpdir()
      local db = open(dir, { mode = "prod" })
      assert.equal("yield", db:config().sync_waits) -- the default
      db:put("y1", "yielding", { sync = true })
      assert.is_true(db:update_config("sync_waits", "block"))
      assert.equal("block", db:config().sync_waits)
      db:put("b1", "blocking", { sync = true })
      local s = db:stats()
      assert.is_number(s.sync_waits_yielded)
      assert.is_number(s.sync_waits_blocked)
      local ok, msg, code = db:update_config("sync_waits", "spin")
      assert.is_nil(ok)
      assert.equal("invalid argument", code)
      assert.matches("sync_waits", msg, 1, true)
      db:close()
      db = open(dir, { mode = "prod", sync_waits = "block" })
      assert.equal("block", db:config().sync_waits)
      assert.equal("yielding", db:get("y1"))
      assert.equal("blocking", db:get("b1"))
      db:close()
    end)
  end)

  describe("binary safety", function()
    it("accepts the empty key", function()
      local dir = helper.tmpdir()
      local db = open(dir)
      assert.is_nil(db:get(""))
      assert.is_true(db:put("", "empty"))
      db:put("a", "1")
      assert.equal("empty", db:get(""))
      local keys, vals = scan_all(db)
      assert.same({ "", "a" }, keys)
      assert.same({ "empty", "1" }, vals)
      keys = scan_all(db, "", "a")
      assert.same({ "" }, keys)
      keys = scan_all(db, nil, nil, { reverse = true })
      assert.same({ "a", "" }, keys)
      db = reopen(db, dir)
      assert.equal("empty", db:get(""))
      assert.is_true(db:delete(""))
      assert.is_nil(db:get(""))
      assert.same({ "a" }, (scan_all(db)))
      db:close()
    end)

    it("round-trips keys and values with NUL bytes and all 256 byte values", function()
      local dir = helper.tmpdir()
      local db = open(dir)
      local all = helper.all_bytes()
      local pairs_ = {
        { "\0", "nul" },
        { "a\0b", "v\0w" },
        { "a\0", "x" },
        { all, all:reverse() },
        { "\255\255", "\0\0\0" },
      }
      for i = 0, 255 do
        pairs_[#pairs_ + 1] = { "byte" .. string.char(i), string.char(i):rep(3) }
      end
      for _, p in ipairs(pairs_) do
        assert.is_true(db:put(p[1], p[2]))
      end
      local function check(d)
        for _, p in ipairs(pairs_) do
          assert.equal(p[2], d:get(p[1]))
        end
        local keys = scan_all(d)
        assert.equal(#pairs_, #keys)
        for i = 2, #keys do
          assert.is_true(keys[i - 1] < keys[i], "bytewise order at " .. i)
        end
        local bkeys = scan_all(d, nil, nil, { prefix = "byte" })
        assert.equal(256, #bkeys)
        for i = 0, 255 do
          assert.equal("byte" .. string.char(i), bkeys[i + 1])
        end
      end
      check_each_layer(db, dir, check)
    end)

    it("returns values of every size around the get's 2048-byte stack buffer", function()
      local dir = helper.tmpdir()
      local db = open(dir)
      local vals = {}
      for _, n in ipairs({ 0, 1, 2047, 2048, 2049, 4096, 65536 }) do
        local v = ("a\0" .. string.char(n % 256)):rep(n // 3 + 1):sub(1, n) -- NULs inside
        vals["k" .. n] = v
        assert.is_true(db:put("k" .. n, v))
      end
      local function check(d)
        for k, v in pairs(vals) do
          assert.equal(v, d:get(k))
        end
        assert.is_nil(d:get("k3"))
      end
      check_each_layer(db, dir, check)
    end)

    it("stores a 1 MiB value", function()
      local dir = helper.tmpdir()
      local db = open(dir)
      local big = {}
      for i = 1, 1024 do
        big[i] = string.format("%04d", i % 10000):rep(256)
      end
      big = table.concat(big)
      assert.equal(1024 * 1024, #big)
      assert.is_true(db:put("big", big))
      assert.equal(big, db:get("big"))
      db:flush()
      assert.equal(big, db:get("big"))
      db = reopen(db, dir)
      assert.equal(big, db:get("big"))
      db:close()
    end)

    it("maps escaped introspection strings back to bytes", function()
      local all = helper.all_bytes()
      -- the engine's rule (core/src/json.h): bytes outside 0x20..0x7e, '"' and '\\' are escaped
      local escaped = all:gsub(".", function(c)
        if c == '"' or c == "\\" then
          return "\\" .. c
        elseif c:match("[\32-\126]") then
          return c
        end
        return string.format("\\u%04x", c:byte())
      end)
      local decoded, msg = kiwi.decode_json('{"key":"' .. escaped .. '"}')
      assert(decoded, msg)
      assert.equal(all, decoded.key)
      assert.equal("plain", kiwi.latin1_bytes("plain"))
      assert.equal("\255\0", kiwi.latin1_bytes("\195\191\0"))
    end)
  end)

  describe("introspection", function()
    it("decodes memtables, SSTables, stats and traces with binary keys as raw bytes", function()
      local db = open(helper.tmpdir(), { max_memtable_entries = 1000 })
      local bkey, bval = "b\0\255\"\\\n", "v\0\128\255"
      db:put(bkey, bval)
      db:put("plain", "p")
      db:delete("gone")
      local mems = assert(db:memtables())
      assert.is_true(#mems >= 1)
      local active
      for _, m in ipairs(mems) do
        if m.state == "active" then
          active = m
        end
      end
      assert.is_table(active)
      local mem = assert(db:memtable(active.id))
      local found = {}
      for _, e in ipairs(mem.entries) do
        found[e.key] = e
      end
      assert.equal(bval, found[bkey].value)
      assert.equal("delete", found.gone.type)

      local tr = assert(db:trace(bkey))
      assert.equal(bkey, tr.key)
      assert.equal(bval, tr.value)
      assert.equal("found", tr.result)

      assert.is_true(db:flush())
      local levels = assert(db:sstables())
      local file
      for _, lv in ipairs(levels) do
        for _, f in ipairs(lv.files) do
          file = file or f
        end
      end
      assert.is_table(file)
      local sst = assert(db:sstable(file.id))
      found = {}
      for _, e in ipairs(sst.entries) do
        found[e.key] = e
      end
      assert.equal(bval, found[bkey].value)
      assert.equal(bkey, sst.smallest)

      local st = assert(db:stats())
      assert.is_number(st.puts)
      assert.is_true(st.puts >= 2)
      local cfg = assert(db:config())
      assert.equal("dev", cfg.mode)
      assert.equal(1000, cfg.max_memtable_entries)
      assert.is_true(db:update_config("max_memtable_entries", 2000))
      assert.equal(2000, db:config().max_memtable_entries)

      local t, msg, code = db:memtable(987654)
      assert.is_nil(t)
      assert.equal("invalid argument: unknown property memtable:987654", msg)
      assert.equal("invalid argument", code)
      db:close()
    end)
  end)

  describe("batches", function()
    it("counts, clears and applies all operations", function()
      local db = open(helper.tmpdir())
      db:put("gone", "x")
      local b = kiwi.batch()
      assert.equal(0, b:count())
      b:put("k1", "v1")
      b:put("k2", "v2")
      b:delete("gone")
      assert.equal(3, b:count())
      assert.is_true(db:write(b, { sync = true }))
      assert.equal("v1", db:get("k1"))
      assert.equal("v2", db:get("k2"))
      assert.is_nil(db:get("gone"))
      b:clear()
      assert.equal(0, b:count())
      assert.is_true(db:write(b))
      b:close()
      db:close()
    end)

    it("lets a later operation in a batch win", function()
      local db = open(helper.tmpdir())
      local b = kiwi.batch()
      b:put("k", "first"):put("k", "second")
      b:put("d", "x"):delete("d")
      b:delete("p"):put("p", "back")
      assert.is_true(db:write(b))
      assert.equal("second", db:get("k"))
      assert.is_nil(db:get("d"))
      assert.equal("back", db:get("p"))
      db:close()
    end)

    it("is seen all at once by a snapshot taken before or after", function()
      local db = open(helper.tmpdir())
      local before = db:snapshot()
      local b = kiwi.batch()
      for i = 1, 100 do
        b:put(string.format("k%03d", i), "v")
      end
      assert.is_true(db:write(b))
      local after = db:snapshot()
      assert.equal(0, #scan_all(db, nil, nil, { snapshot = before }))
      assert.equal(100, #scan_all(db, nil, nil, { snapshot = after }))
      before:release()
      after:release()
      db:close()
    end)
  end)

  describe("snapshots", function()
    it("keep seeing old values after overwrite, delete and flush", function()
      local db = open(helper.tmpdir())
      db:put("a", "1")
      db:put("b", "2")
      db:put("c", "3")
      local snap = db:snapshot()
      assert.is_number(snap:sequence())
      db:put("a", "1b")
      db:delete("b")
      db:put("d", "4")
      assert.equal("1", db:get("a", { snapshot = snap }))
      assert.equal("2", db:get("b", { snapshot = snap }))
      assert.is_nil(db:get("d", { snapshot = snap }))
      assert.is_true(db:flush())
      db:put("c", "3b")
      assert.is_true(db:flush())
      helper.compact(db)
      assert.equal("1", db:get("a", { snapshot = snap }))
      assert.equal("2", db:get("b", { snapshot = snap }))
      assert.equal("3", db:get("c", { snapshot = snap }))
      local keys, vals = scan_all(db, nil, nil, { snapshot = snap })
      assert.same({ "a", "b", "c" }, keys)
      assert.same({ "1", "2", "3" }, vals)
      keys, vals = scan_all(db)
      assert.same({ "a", "c", "d" }, keys)
      assert.same({ "1b", "3b", "4" }, vals)
      snap:release()
      snap:release() -- idempotent
      db:close()
    end)

    it("support <close>", function()
      local db = open(helper.tmpdir())
      local outer
      do
        local snap <close> = db:snapshot()
        outer = snap
        assert.is_false(snap:is_released())
      end
      assert.is_true(outer:is_released())
      db:close()
    end)
  end)

  describe("misuse", function()
    it("raises for keys and values that are not strings", function()
      local db = open(helper.tmpdir())
      assert.has_error(function() db:put(1, "v") end,
        "bad argument #1 to 'put' (string expected, got number)")
      assert.has_error(function() db:put("k", 2) end,
        "bad argument #2 to 'put' (string expected, got number)")
      assert.has_error(function() db:get(nil) end,
        "bad argument #1 to 'get' (string expected, got nil)")
      assert.has_error(function() db:delete({}) end,
        "bad argument #1 to 'delete' (string expected, got table)")
      assert.has_error(function() db:scan(1) end,
        "bad argument #1 to 'scan' (string expected, got number)")
      assert.has_error(function() db:put("k", "v", { sync = "yes" }) end,
        "bad option 'sync' (boolean expected, got string)")
      assert.has_error(function() db:get("k", 5) end,
        "bad argument #2 to 'get' (table expected, got number)")
      assert.has_error(function() db:get("k", { snapshot = "s" }) end,
        "bad option 'snapshot' (kiwi.snapshot expected, got string)")
      assert.has_error(function() db:scan(nil, nil, { limit = -1 }) end,
        "bad option 'limit' (non-negative integer expected)")
      assert.has_error(function() db:write("batch") end)
      local b = kiwi.batch()
      assert.has_error(function() b:put(1, "v") end,
        "bad argument #1 to 'put' (string expected, got number)")
      assert.has_error(function() kiwi.open(42) end,
        "bad argument #1 to 'open' (string expected, got number)")
      db:close()
    end)

    it("raises when a db method gets something that is not a db, and the db is intact", function()
      local db = open(helper.tmpdir())
      assert.is_true(db:put("k", "v"))
      local put, get = db.put, db.get
      local b = kiwi.batch()
      local snap = db:snapshot()
      -- a light userdata (debug.upvalueid's) and strings and tables of every small length: the
      -- tagged test reads a userdata's memory only when it has the db's size
      local up = 0
      local light = debug.upvalueid(function() return up end, 1)
      assert.equal("userdata", type(light))
      local others = { {}, "db", 42, b, snap, io.stdout, db:scan(), light }
      for n = 1, 256 do
        local t = {}
        for i = 1, n do
          t[i] = i
        end
        others[#others + 1] = string.rep("x", n)
        others[#others + 1] = t
      end
      for _, self in ipairs(others) do
        local ok, err = pcall(put, self, "k", "x")
        assert.is_false(ok)
        assert.matches("kiwi%.db expected, got ", err)
        ok, err = pcall(get, self, "k")
        assert.is_false(ok)
        assert.matches("kiwi%.db expected, got ", err)
      end
      assert.equal("v", db:get("k"))
      snap:release()
      b:close()
      db:close()
    end)

    it("raises when a batch method gets something that is not a batch, and the batch is intact",
      function()
        local db = open(helper.tmpdir())
        local b = kiwi.batch()
        b:put("a", "1")
        local put, clear = b.put, b.clear
        local snap = db:snapshot()
        local up = 0
        local others = { {}, "b", 42, db, snap, io.stdout, db:scan(),
          debug.upvalueid(function() return up end, 1) }
        for n = 1, 64 do
          others[#others + 1] = string.rep("x", n)
        end
        for _, self in ipairs(others) do
          local ok, err = pcall(put, self, "k", "x")
          assert.is_false(ok)
          assert.matches("kiwi%.batch expected, got ", err)
          ok, err = pcall(clear, self)
          assert.is_false(ok)
          assert.matches("kiwi%.batch expected, got ", err)
        end
        assert.is_true(db:write(b))
        assert.equal("1", db:get("a"))
        assert.is_nil(db:get("k"))
        snap:release()
        b:close()
        db:close()
      end)

    it("raises on a closed db, and close is idempotent", function()
      local db = open(helper.tmpdir())
      assert.is_true(db:close())
      assert.is_true(db:close())
      assert.is_true(db:is_closed())
      for _, call in ipairs({
        function() db:get("k") end,
        function() db:put("k", "v") end,
        function() db:delete("k") end,
        function() db:write(kiwi.batch()) end,
        function() db:scan() end,
        function() db:snapshot() end,
        function() db:flush() end,
        function() db:stats() end,
      }) do
        assert.has_error(call, "attempt to use a closed kiwi db")
      end
    end)

    it("raises for a released snapshot", function()
      local db = open(helper.tmpdir())
      local snap = db:snapshot()
      snap:release()
      assert.has_error(function() db:get("k", { snapshot = snap }) end,
        "attempt to use a released kiwi snapshot")
      assert.has_error(function() db:scan(nil, nil, { snapshot = snap }) end,
        "attempt to use a released kiwi snapshot")
      assert.has_error(function() snap:sequence() end, "attempt to use a released kiwi snapshot")
      db:close()
    end)

    it("raises for a snapshot of another db", function()
      local db1 = open(helper.tmpdir())
      local db2 = open(helper.tmpdir())
      local snap = db1:snapshot()
      assert.has_error(function() db2:get("k", { snapshot = snap }) end,
        "bad option 'snapshot' (the snapshot belongs to another kiwi db)")
      db1:close()
      db2:close()
    end)

    it("raises for iterators and snapshots used after db:close()", function()
      local db = open(helper.tmpdir())
      for i = 1, 10 do
        db:put("k" .. i, "v")
      end
      local snap = db:snapshot()
      local step, _, _, iter = db:scan()
      assert.is_string((step()))
      local step2 = db:scan(nil, nil, { snapshot = snap })
      assert.is_true(db:close())
      assert.has_error(step, "attempt to use a kiwi iter whose db is closed")
      assert.has_error(step2, "attempt to use a kiwi iter whose db is closed")
      assert.has_error(function() iter:next() end, "attempt to use a kiwi iter whose db is closed")
      assert.has_error(function() snap:sequence() end,
        "attempt to use a kiwi snapshot whose db is closed")
      iter:close()   -- still harmless
      snap:release() -- still harmless
    end)

    it("raises for a closed batch", function()
      local b = kiwi.batch()
      b:close()
      b:close()
      assert.has_error(function() b:put("k", "v") end, "attempt to use a closed kiwi batch")
      local db = open(helper.tmpdir())
      assert.has_error(function() db:write(b) end, "attempt to use a closed kiwi batch")
      db:close()
    end)
  end)

  describe("lifetimes", function()
    it("closes a db held in a <close> variable", function()
      local dir = helper.tmpdir()
      local outer
      do
        local db <close> = open(dir)
        outer = db
        db:put("k", "v")
      end
      assert.is_true(outer:is_closed())
      local db = open(dir) -- the lock was released
      assert.equal("v", db:get("k"))
      db:close()
    end)

    it("collects unclosed handles without crashing", function()
      local dir = helper.tmpdir()
      do
        local db = open(dir)
        db:put("k", "v")
        local _ = db:snapshot()
        local step = db:scan()
        step()
        kiwi.batch():put("x", "y")
        local _s2 = db:snapshot()
        db:scan(nil, nil, { snapshot = _s2 })
      end
      collectgarbage()
      collectgarbage()
      local db = open(dir) -- __gc closed the first handle and released the lock
      assert.equal("v", db:get("k"))
      -- children collected after their db closed
      local holder = { db:snapshot(), db:scan() }
      holder[2]()
      db:close()
      holder = nil -- luacheck: ignore 311
      collectgarbage()
      collectgarbage()
    end)

    it("keeps the db alive while a child is reachable", function()
      local dir = helper.tmpdir()
      local step
      do
        local db = open(dir)
        db:put("a", "1")
        db:put("b", "2")
        step = db:scan()
      end
      collectgarbage()
      collectgarbage()
      assert.same({ "a", "1" }, { step() })
      assert.same({ "b", "2" }, { step() })
      assert.is_nil(step())
      step = nil -- luacheck: ignore 311
      collectgarbage()
      collectgarbage()
      open(dir):close()
    end)
  end)
end)
