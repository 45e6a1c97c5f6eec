-- spec/kiwi_scan_spec.lua: db:scan over every layer of the LSM tree (active memtable, immutable
-- memtables, SSTables) with tombstones and overwrites, checked against a plain Lua model:
-- forward and reverse, bounds, limit, prefix, snapshots, and `break` releasing the iterator.
local kiwi = require("kiwi")
local helper = require("spec.helper")
local it = helper.both_modes(it) -- every test runs blocking and inside a task

local open = helper.open_db

-- The successor of a prefix: the least string greater than all strings that start with it.
local function successor(p)
  p = p:gsub("\255+$", "")
  if p == "" then
    return nil
  end
  return p:sub(1, -2) .. string.char(p:byte(-1) + 1)
end

-- What db:scan(start, stop, opts) must yield for the model { key = value }.
local function model_scan(model, start, stop, opts)
  opts = opts or {}
  local lo, hi = start, stop
  if opts.prefix then
    if lo == nil or opts.prefix > lo then
      lo = opts.prefix
    end
    local s = successor(opts.prefix)
    if s and (hi == nil or s < hi) then
      hi = s
    end
  end
  local keys = {}
  for k in pairs(model) do
    if (lo == nil or k >= lo) and (hi == nil or k < hi) then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys)
  if opts.reverse then
    for i = 1, #keys // 2 do
      keys[i], keys[#keys + 1 - i] = keys[#keys + 1 - i], keys[i]
    end
  end
  local out = {}
  for i = 1, math.min(#keys, opts.limit or #keys) do
    out[i] = { keys[i], model[keys[i]] }
  end
  return out
end

local function db_scan(db, start, stop, opts)
  local out = {}
  for k, v in db:scan(start, stop, opts) do
    out[#out + 1] = { k, v }
  end
  return out
end

-- Compares two lists of {key, value} and reports the first difference readably.
local function same_pairs(expected, got, what)
  local n = math.max(#expected, #got)
  for i = 1, n do
    local e, g = expected[i], got[i]
    if not e or not g or e[1] ~= g[1] or e[2] ~= g[2] then
      error(string.format("%s: first difference at #%d: expected %q = %q, got %q = %q (%d vs %d pairs)",
        what, i, e and e[1] or "(end)", e and e[2] or "", g and g[1] or "(end)", g and g[2] or "",
        #expected, #got), 2)
    end
  end
end

local function check_scans(db, model, label)
  local cases = {
    { nil, nil, nil },
    { nil, nil, { reverse = true } },
    { "key0100", "key0200", nil },
    { "key0100", "key0200", { reverse = true } },
    { "key0100", nil, { limit = 17 } },
    { nil, "key0500", { reverse = true, limit = 33 } },
    { nil, nil, { prefix = "key03" } },
    { nil, nil, { prefix = "key03", reverse = true } },
    { "key0350", nil, { prefix = "key03" } },
    { nil, "key0350", { prefix = "key03", reverse = true, limit = 5 } },
    { "key0350", "key0360", { prefix = "key03" } },
    { "key0999x", nil, nil },
    { nil, "a", nil },
    { "key0200", "key0100", nil },
    { nil, nil, { limit = 0 } },
    { nil, nil, { prefix = "other" } },
    { "key0123", "key0124", nil },
    { "key0123", "key0123\0", { reverse = true } },
  }
  for i, c in ipairs(cases) do
    same_pairs(model_scan(model, c[1], c[2], c[3]), db_scan(db, c[1], c[2], c[3]),
      label .. " case " .. i)
  end
end

describe("kiwi scan", function()
  it("reads back 200k keys written across ~10 flushes, in order", function()
    local dir = helper.tmpdir()
    local db = open(dir, { max_memtable_entries = 20000 })
    local n = 200000
    local wopts = { sync = false }
    local fmt = string.format
    for i = 1, n do
      assert(db:put(fmt("k%07d", i), fmt("v%d", i), wopts))
    end
    local function check()
      local count, prev = 0, nil
      for k, v in db:scan() do
        count = count + 1
        if prev and prev >= k then
          error("out of order: " .. prev .. " then " .. k)
        end
        if v ~= "v" .. tonumber(k:sub(2)) then
          error("wrong value for " .. k .. ": " .. v)
        end
        prev = k
      end
      assert.equal(n, count)
      count = 0
      for k in db:scan(nil, nil, { reverse = true }) do
        count = count + 1
        if count == 1 then
          assert.equal(fmt("k%07d", n), k)
        end
      end
      assert.equal(n, count)
      for _, i in ipairs({ 1, 2, 19999, 20000, 20001, 123456, n }) do
        assert.equal("v" .. i, db:get(fmt("k%07d", i)))
      end
      assert.is_nil(db:get("k0000000"))
      assert.is_nil(db:get(fmt("k%07d", n + 1)))
    end
    check()
    assert.is_true(db:close())
    db = open(dir, { max_memtable_entries = 20000 })
    check()
    db:close()
  end)

  it("shows exactly the live set across memtables, immutables and SSTables", function()
    local dir = helper.tmpdir()
    -- small memtables so writes rotate into immutable memtables that are flushed meanwhile
    local db = open(dir, { max_memtable_entries = 100 })
    local model = {}
    local function put(k, v)
      assert.is_true(db:put(k, v))
      model[k] = v
    end
    local function del(k)
      assert.is_true(db:delete(k))
      model[k] = nil
    end
    for i = 0, 999, 2 do -- even keys
      put(string.format("key%04d", i), "a" .. i)
    end
    assert.is_true(db:flush())
    check_scans(db, model, "after flush")
    for i = 0, 999, 6 do
      del(string.format("key%04d", i)) -- tombstones over SSTable data
    end
    for i = 0, 999, 10 do
      put(string.format("key%04d", i), "b" .. i) -- overwrites (some resurrect deleted keys)
    end
    assert.is_true(db:flush())
    check_scans(db, model, "after second flush")
    for i = 1, 999, 2 do -- odd keys, no flush: some in immutables, some in the active memtable
      put(string.format("key%04d", i), "c" .. i)
    end
    for i = 3, 999, 9 do
      del(string.format("key%04d", i))
    end
    put("other", "o")
    put("key0999x", "tail")
    check_scans(db, model, "unflushed")
    local snap = db:snapshot()
    local frozen = {}
    for k, v in pairs(model) do
      frozen[k] = v
    end
    for i = 0, 999, 4 do
      del(string.format("key%04d", i))
    end
    put("key0500", "d500")
    check_scans(db, model, "after more deletes")
    same_pairs(model_scan(frozen), db_scan(db, nil, nil, { snapshot = snap }), "snapshot")
    same_pairs(model_scan(frozen, nil, nil, { reverse = true, prefix = "key07" }),
      db_scan(db, nil, nil, { snapshot = snap, reverse = true, prefix = "key07" }), "snapshot rev")
    snap:release()
    assert.is_true(db:close())
    db = open(dir, { max_memtable_entries = 100 })
    check_scans(db, model, "after reopen")
    if helper.compact(db) then
      check_scans(db, model, "after compaction")
    end
    db:close()
  end)

  it("handles prefixes ending in 0xff bytes and binary bounds", function()
    local db = open(helper.tmpdir())
    local model = {}
    for _, k in ipairs({ "p", "p\0", "p\254", "p\255", "p\255\0", "p\255\255", "p\255\255\255",
      "q", "\255", "\255\255", "\255\255\1", "" }) do
      db:put(k, "v" .. #k)
      model[k] = "v" .. #k
    end
    db:flush()
    db:delete("p\255")
    model["p\255"] = nil
    for _, c in ipairs({
      { nil, nil, { prefix = "p\255" } },
      { nil, nil, { prefix = "p\255", reverse = true } },
      { nil, nil, { prefix = "\255" } },
      { nil, nil, { prefix = "\255\255", reverse = true } },
      { nil, nil, { prefix = "p" } },
      { "", "\0", nil },
      { "p\0", "p\255\255", { reverse = true } },
      { nil, nil, { prefix = "" } },
    }) do
      same_pairs(model_scan(model, c[1], c[2], c[3]), db_scan(db, c[1], c[2], c[3]), "binary")
    end
    db:close()
  end)

  it("matches a random model after random writes", function()
    local dir = helper.tmpdir()
    local db = open(dir, { max_memtable_entries = 64 })
    local model = {}
    local rnd = math.random
    math.randomseed(42)
    for round = 1, 6 do
      for _ = 1, 400 do
        local k = string.format("r%03d", rnd(0, 300))
        local r = rnd()
        if r < 0.6 then
          local v = string.format("%d-%d", round, rnd(1, 1e6))
          db:put(k, v)
          model[k] = v
        elseif r < 0.85 then
          db:delete(k)
          model[k] = nil
        else
          local b = kiwi.batch()
          for _ = 1, 5 do
            local bk = string.format("r%03d", rnd(0, 300))
            if rnd() < 0.7 then
              b:put(bk, "b" .. round)
              model[bk] = "b" .. round
            else
              b:delete(bk)
              model[bk] = nil
            end
          end
          db:write(b)
        end
      end
      if round % 2 == 0 then
        db:flush()
      end
      for _ = 1, 10 do
        local a, b = string.format("r%03d", rnd(0, 300)), string.format("r%03d", rnd(0, 300))
        local opts = { reverse = rnd() < 0.5, limit = rnd() < 0.5 and rnd(0, 50) or nil }
        same_pairs(model_scan(model, a, b, opts), db_scan(db, a, b, opts), "round " .. round)
      end
      same_pairs(model_scan(model), db_scan(db), "round " .. round .. " full")
    end
    db:close()
    db = open(dir, { max_memtable_entries = 64 })
    same_pairs(model_scan(model), db_scan(db), "reopened")
    db:close()
  end)

  it("keeps one consistent view while the db changes and flushes under it", function()
    local db = open(helper.tmpdir(), { max_memtable_entries = 50 })
    local model = {}
    for i = 1, 500 do
      local k = string.format("s%04d", i)
      db:put(k, "old" .. i)
      model[k] = "old" .. i
    end
    local expected = model_scan(model)
    local got = {}
    local step = db:scan()
    for _ = 1, 100 do
      local k, v = step()
      got[#got + 1] = { k, v }
    end
    -- rewrite everything, delete some, flush repeatedly: memtables and WALs the scan started
    -- on are flushed and retired while it still reads them
    for i = 1, 500 do
      local k = string.format("s%04d", i)
      if i % 3 == 0 then
        db:delete(k)
      else
        db:put(k, "new" .. i)
      end
    end
    db:put("s0000", "before all")
    assert.is_true(db:flush())
    for k, v in step do
      got[#got + 1] = { k, v }
    end
    same_pairs(expected, got, "view of the open scan")
    local now = db_scan(db)
    assert.equal(500 - 166 + 1, #now)
    assert.same({ "s0000", "before all" }, now[1])
    db:close()
  end)

  it("releases the iterator on break", function()
    local dir = helper.tmpdir()
    local db = open(dir)
    for i = 1, 100 do
      db:put(string.format("k%03d", i), "v")
    end
    db:flush()
    local iter
    for k, _, _ in db:scan() do
      if k == "k010" then
        break
      end
    end
    do
      local step, _, _, closer = db:scan()
      iter = closer
      for k in step, nil, nil, closer do -- the same shape a for over db:scan() has
        if k == "k005" then
          break
        end
      end
    end
    assert.matches("closed", tostring(iter))
    assert.has_error(function() iter:next() end, "attempt to use a closed kiwi iter")
    -- an error inside the loop body closes it too
    local ok = pcall(function()
      local step, state, ctl, closer = db:scan()
      iter = closer
      for _ in step, state, ctl, closer do
        error("boom")
      end
    end)
    assert.is_false(ok)
    assert.matches("closed", tostring(iter))
    -- running to the end releases the engine iterator before close
    local step, _, _, closer = db:scan("k099")
    assert.is_string(step())
    assert.is_string(step())
    assert.is_nil(step())
    assert.is_nil(step())
    assert.matches("done", tostring(closer))
    for _ = 1, 1000 do -- many short scans, dropped without break or close: no leak, no crash
      local s = db:scan()
      s()
    end
    collectgarbage()
    assert.is_true(db:close())
    open(dir):close()
  end)
end)
