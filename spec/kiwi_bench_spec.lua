-- spec/kiwi_bench_spec.lua: kiwi.bench (the engine of `kiwi bench`) on tiny runs: every
-- workload in every way gives a row, reads find what the fills wrote, group commit shares
-- fsyncs, and what the workloads write is the documented data (key %016d, value i % 4096 of
-- the value pool), so the Lua figures measure the same work as the C bench's.
local kiwi = require("kiwi")
local bench = require("kiwi.bench")
local bench_workloads = require("kiwi.bench_workloads")
local helper = require("spec.helper")

local function quiet() end

-- The rows of res by mode, then workload.
local function rows_by(res)
  local by = {}
  for _, r in ipairs(res.rows) do
    by[r.mode] = by[r.mode] or {}
    by[r.mode][r.workload] = r
  end
  return by
end

describe("kiwi.bench", function()
  it("runs every workload in every way, with found counts and group commit", function()
    local dir = helper.tmpdir()
    local res = bench.run({ num = 600, sync_num = 40, rounds = 1, c_bench = false,
      sync_tasks = { 1, 8 }, dir = dir, out = quiet })
    assert.is_nil(res.c)
    local by = rows_by(res)
    for _, mode in ipairs({ "blocking", "task", "tasks64" }) do
      for _, w in ipairs(bench_workloads.DEFAULT_WORKLOADS) do
        local r = by[mode] and by[mode][w]
        assert.is_table(r, mode .. " " .. w)
        assert.is_true(r.ops > 0 and r.ops_per_s > 0, mode .. " " .. w)
        assert.is_nil(r.ratio) -- no C figures to compare with
      end
      -- fillrandom starts a fresh db and overwrite adds to it: 1200 random picks of 600 keys
      -- leave ~86% of them (1 - e^-2). readrandom's 600 random gets find about that share,
      -- readseq's scan counts the distinct keys.
      local found, total = by[mode].readrandom.note:match("^(%d+) of (%d+) found$")
      assert.equal(600, tonumber(total))
      assert.is_true(tonumber(found) > 400 and tonumber(found) < 600, by[mode].readrandom.note)
      local distinct = by[mode].readseq.ops
      assert.is_true(distinct > 400 and distinct < 600, mode .. " readseq " .. distinct)
    end
    for _, mode in ipairs({ "blocking", "task", "tasks64" }) do
      assert.equal(0, by[mode].fillrandom.syncs, mode) -- the db's default: no fsync
      assert.equal(0, by[mode].fillbatch.syncs, mode)
      assert.is_true(by[mode].fillsync.syncs >= 1 and by[mode].fillsync.syncs <= 40, mode)
    end
    assert.equal(40, by.blocking.fillsync.syncs) -- one writer: one fsync per sync put
    assert.equal(2, #res.sync)
    assert.equal(1, res.sync[1].tasks)
    assert.equal(1, res.sync[1].per_write) -- one task: an fsync per sync put
    assert.equal(8, res.sync[2].tasks)
    assert.is_true(res.sync[2].per_write < 0.5, tostring(res.sync[2].per_write))
    assert.matches("| fillbatch |", bench.markdown(res), 1, true)
  end)

  it("writes the documented keys and values (fillbatch: key i gets value i % 4096)", function()
    local dir = helper.tmpdir()
    bench.run({ num = 2500, rounds = 1, c_bench = false, modes = { "blocking" },
      settle = false,
      workloads = { "fillbatch" }, sync_tasks = {}, dir = dir, out = quiet, seed = 7 })
    math.randomseed(7) -- the values are drawn from the generator the run seeded
    local vals = bench_workloads.value_maker(100)
    local db = assert(kiwi.open(dir .. "/db"))
    local n = 0
    for k, v in db:scan() do
      assert.equal(string.format("%016d", n), k)
      assert.equal(vals[n % 4096], v, "value of key " .. k)
      assert.equal(100, #v)
      n = n + 1
    end
    assert.equal(2500, n)
    assert(db:close())
  end)

  it("passes no write options unless the settings make writes sync by default", function()
    local dir = helper.tmpdir()
    -- sync_writes = true: the non-sync workloads must pass { sync = false } to stay non-sync
    local res = bench.run({ num = 300, rounds = 1, c_bench = false, modes = { "blocking" },
      settle = false,
      workloads = { "fillrandom", "readrandom" }, sync_tasks = {}, dir = dir, out = quiet,
      settings = { sync_writes = true } })
    local by = rows_by(res)
    assert.equal(0, by.blocking.fillrandom.syncs) -- { sync = false } was passed
    local db = assert(kiwi.open(dir .. "/db"))
    local n = 0
    for _ in db:scan() do
      n = n + 1
    end
    assert(db:close())
    local found = tonumber(by.blocking.readrandom.note:match("^(%d+) of"))
    assert.is_true(n > 0 and found > 0 and found <= 300)
  end)

  it("runs the C bench with the same num, value size, mode and settings", function()
    local path = "build/release/kiwi_bench" -- make test builds it
    assert.is_truthy(io.open(path, "r"), path .. " is missing: run make bench-build")
    local run = { workloads = { "fillseq", "readrandom" }, num = 400, sync_num = 10,
      value_size = 64, mode = "dev", settings = { block_cache_data_mb = 4 } }
    local f = assert(bench.c_figures(path, run))
    assert.is_true(f.fillseq > 0 and f.readrandom > 0)
    -- each of them reaches the C bench: a bad one makes it fail with its message
    for _, bad in ipairs({
      { "mode", "nosuch", "--mode=nosuch: unknown mode" },
      { "value_size", 4, "--value_size=4: expected an integer in [8," },
      { "settings", { block_cache_data_mb = -1 }, "setting block_cache_data_mb=-1" },
    }) do
      local r = { workloads = run.workloads, num = 100, sync_num = 10 }
      r[bad[1]] = bad[2]
      local none, msg = bench.c_figures(path, r)
      assert.is_nil(none, bad[1])
      assert.is_truthy(msg:find(bad[3], 1, true), msg)
    end
    -- bench.run with the C bench: ratios to the C figures of the same settings
    local res = bench.run({ num = 400, rounds = 1, c_bench = path, modes = { "blocking" },
      settle = false,
      workloads = { "fillseq", "readrandom" }, sync_tasks = {}, dir = helper.tmpdir(),
      out = quiet, settings = { block_cache_data_mb = 4 } })
    assert.is_true(res.c.fillseq > 0 and res.c.readrandom > 0)
    for _, r in ipairs(res.rows) do
      assert.near(r.ops_per_s / r.c_ops_per_s, r.ratio, 1e-9)
    end
  end)

  it("opens its dbs with the settings kiwi_bench gives kiwi, in both modes", function()
    local path = "build/release/kiwi_bench"
    for _, mode in ipairs({ "prod", "dev" }) do
      local report = helper.tmpdir() .. "/report.md"
      local p = assert(io.popen(string.format("%s --benchmarks=fillseq --num=100 --rounds=1 "
        .. "--engines=kiwi --mode=%s --markdown=%s 2>&1", path, mode, report)))
      p:read("a")
      p:close()
      local line = helper.read_file(report):match("\n%- %*%*kiwi%*%*: ([^\n]*)")
      assert.is_string(line, "the report has no kiwi settings line")
      local theirs = {}
      for name, value in line:gmatch("`([%w_]+)=([^`]*)`") do
        theirs[name] = value
      end
      local ours = bench.c_bench_settings(mode)
      local n = 0
      for name, value in pairs(theirs) do
        n = n + 1
        local mine = ours[name]
        if type(mine) == "number" then
          assert.near(tonumber(value), mine, mine * 1e-5, name)
        else
          assert.equal(value, tostring(mine), name)
        end
      end
      for name in pairs(ours) do
        assert.is_not_nil(theirs[name], mode .. ": kiwi_bench does not set " .. name)
      end
      assert.is_true(n >= 9, line)
      assert.matches("^mode `" .. mode .. "`", line)
    end
  end)

  it("waits for the background work a workload leaves before the next one (settle)", function()
    -- a db with 64 KiB memtables and L0 compaction at 2 files: 6 MiB of puts leave flushes and
    -- compactions running when the loop ends
    local dir = helper.tmpdir()
    local db = assert(kiwi.open(dir, { mode = "dev", max_memtable_size_mb = 0.0625,
      l0_compaction_threshold = 2 }))
    local v = string.rep("v", 1000)
    for i = 1, 6000 do
      assert(db:put(string.format("k%06d", (i * 7919) % 6000), v))
    end
    local t0 = require("luv").hrtime()
    bench.settle()
    local secs = (require("luv").hrtime() - t0) / 1e9
    local st = db:stats()
    assert.equal(0, st.compactions_running)
    assert.equal(0, st.immutable_memtables)
    assert.is_true(st.compactions > 0, "no compaction ran")
    -- at least one quiet 200 ms window, and not the 600 s bound
    assert.is_true(secs >= 0.2 and secs < 60, tostring(secs))
    -- nothing more happens afterwards: the counters stay where settle left them
    require("luv").sleep(300)
    local st2 = db:stats()
    assert.equal(st.compactions, st2.compactions)
    assert.equal(st.flushes, st2.flushes)
    assert.is_true(db:close())
    -- a timer of this process's loop that writes a file for 1.2 s (64 KiB every 20 ms) while
    -- settle runs in a task (its waits then let the loop run): settle waits until the writing
    -- has stopped, where a single 200 ms window would not
    local uv = require("luv")
    local f = assert(io.open(helper.tmpdir() .. "/busy", "wb"))
    local chunk = string.rep("x", 65536)
    local timer = uv.new_timer()
    local started = uv.hrtime()
    timer:start(0, 20, function()
      if uv.hrtime() - started < 1.2e9 then
        f:write(chunk)
        f:flush()
      else
        timer:stop()
      end
    end)
    kiwi.run(function()
      t0 = uv.hrtime()
      bench.settle()
      secs = (uv.hrtime() - t0) / 1e9
    end)
    timer:close()
    uv.run("nowait") -- the close completes before the loop is torn down
    f:close()
    assert.is_true(secs >= 1.1, "settle returned after " .. secs .. " s while the timer wrote")
  end)

  it("refuses an unknown workload and a bad key source with a clear error", function()
    assert.has_error(function()
      bench.run({ num = 10, workloads = { "nosuch" }, c_bench = false, out = quiet })
    end, "kiwi.bench: unknown workload 'nosuch'")
    assert.has_error(function()
      bench.run({ num = 10, keys = "random", c_bench = false, out = quiet })
    end, "kiwi.bench: keys must be 'table' or 'format', not 'random'")
  end)
end)
