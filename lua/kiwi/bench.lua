--- kiwi.bench: db_bench workloads through the Lua API, blocking and in tasks, next to the C figures.
--
--     local bench = require("kiwi.bench")
--     local res = bench.run({ num = 100000 })           -- prints tables as it goes
--     io.write(bench.markdown(res))                      -- the same as Markdown
--
-- Each workload list runs three ways: `blocking` (plain calls, no loop), `task` (the same calls
-- from one kiwi task: every write and every get that misses memory yields to the loop) and
-- `tasks64` (64 tasks sharing the work: disjoint slices of the keys, or of the key range for
-- readseq). Then sync puts from 1, 8, 64 and 512 tasks show group commit: ops/s and fsyncs per
-- write (stats `wal_syncs`).
--
-- The workloads follow core/bench (docs/benchmarks.md, "Method"): 16-byte keys `%016d`, values of
-- `value_size` printable pseudo-random bytes whose second half repeats the first; fillseq,
-- fillrandom, fillbatch (1000 puts per batch) and fillsync (`sync_num` random sync puts) start
-- from an empty db; overwrite, readrandom (`num` random gets) and readseq (one db:scan over the
-- db, ops = pairs) run on the db the previous ones left; after every writing workload db:flush()
-- runs outside the timed region, and after every workload the bench waits for the background
-- work to end (settle), as the C bench does. Keys (and the random order of the random
-- workloads) are made before the timed loops unless `keys = "format"` (see key_source in
-- kiwi.bench_workloads). When the C figures are known (opts.c, or measured by running the C
-- bench with the same workloads and num), each row shows the Lua/C ratio.
--
-- The workloads themselves (data and operations) live in kiwi.bench_workloads; this module runs
-- them (ways, rounds, medians), runs and parses the C bench, and writes the reports.
-- @module kiwi.bench

local kiwi = require("kiwi")
local uv = require("luv")
local bench_workloads = require("kiwi.bench_workloads")
local config = require("kiwi.config")

local M = {}

local DEFAULT_WORKLOADS = bench_workloads.DEFAULT_WORKLOADS
local FRESH = bench_workloads.FRESH
local WRITES = bench_workloads.WRITES
local MODES = { "blocking", "task", "tasks64" }
local RANDOM = bench_workloads.RANDOM
local KEYED = bench_workloads.KEYED

local value_maker = bench_workloads.value_maker
local key_source = bench_workloads.key_source
local check = bench_workloads.check
local ops = bench_workloads.ops
local random_puts = bench_workloads.random_puts

local fmt = string.format
local C_ROUNDS = 3 -- rounds of the C bench per Lua round (M.run)

-- ---- running ------------------------------------------------------------------------------------

local function rmtree(path)
  local st = uv.fs_lstat(path)
  if not st then
    return
  end
  if st.type == "directory" then
    local req = uv.fs_scandir(path)
    while req do
      local name = uv.fs_scandir_next(req)
      if not name then
        break
      end
      rmtree(path .. "/" .. name)
    end
    uv.fs_rmdir(path)
  else
    uv.fs_unlink(path)
  end
end

-- The settings kiwi_bench gives kiwi (kiwi_settings_list in core/bench/bench_kiwi.c, its
-- defaults: 64 MiB memtables bounded by size only, 10 bloom bits a key, 8/16/16 MiB cache
-- tiers, no compression, non-sync writes), so that the Lua dbs and the C bench's run the same
-- engine; the user's settings override both sides alike (M.c_figures passes them on).
local function c_bench_settings(mode)
  return {
    max_memtable_size_mb = 64,
    max_memtable_entries = 1000000000,
    block_size = 4096,
    [mode == "dev" and "bloom_fpr_dev" or "bloom_fpr_prod"] = math.exp(-10 * math.log(2) ^ 2),
    block_cache_data_mb = 8,
    block_cache_index_mb = 16,
    block_cache_bloom_mb = 16,
    compression = "none",
    sync_writes = false,
  }
end

M.c_bench_settings = c_bench_settings -- for the spec that checks them against kiwi_bench's

local function open_db(c)
  local opts = c_bench_settings(c.mode)
  opts.mode = c.mode
  for k, v in pairs(c.settings) do
    opts[k] = v
  end
  return check(kiwi.open(c.dir, opts))
end

local function fresh_db(c)
  if c.db then
    check(c.db:close())
  end
  rmtree(c.dir)
  c.db = open_db(c)
end

-- sync(2), untimed, before each way: the C bench and the previous way leave dirty pages that
-- the kernel writes back over the next seconds, on the CPUs and the disk the next way's timed
-- loops use (kiwi_bench syncs before each engine for the same reason). Without it the blocking
-- way, which runs right after the C bench, measured fillseq at ~1.1M or ~1.7M puts/s by round.
local function sync_disks()
  os.execute("sync")
end

-- Waits, untimed, until the engine's background threads are idle, by the C bench's rule
-- (settle in core/bench/bench_main.c): a 200 ms window in which the process wrote nothing to
-- storage (write_bytes of /proc/self/io) and used under 10 ms of CPU (os.clock: every thread of
-- the process), or 600 s. Without it a workload ran beside the compactions the previous one
-- started, which the C workload it is compared with never does. Where /proc/self/io is not
-- readable, the CPU test alone decides.
local SETTLE_WINDOW_MS, SETTLE_CPU_SECS, SETTLE_MAX_SECS = 200, 0.01, 600

local function process_write_bytes()
  local f = io.open("/proc/self/io", "r")
  if not f then
    return 0
  end
  local text = f:read("a")
  f:close()
  return tonumber(text:match("\nwrite_bytes:%s*(%d+)")) or 0
end

local function settle()
  local t0 = uv.hrtime()
  local w0, c0 = process_write_bytes(), os.clock()
  repeat
    kiwi.sleep(SETTLE_WINDOW_MS)
    local w1, c1 = process_write_bytes(), os.clock()
    local quiet = w1 == w0 and c1 - c0 < SETTLE_CPU_SECS
    w0, c0 = w1, c1
  until quiet or (uv.hrtime() - t0) / 1e9 > SETTLE_MAX_SECS
end

M.settle = settle -- for the spec

-- Runs the workload list one way; returns rows { workload, mode, ops, secs }.
local function run_mode(c, mode)
  local tasks = mode == "tasks64" and 64 or 1
  local rows = {}
  c.db = nil
  fresh_db(c)
  for _, w in ipairs(c.workloads) do
    if FRESH[w] then
      fresh_db(c)
    end
    c.note = nil
    -- untimed: no garbage left from the previous workload (each full collection also halves
    -- the string table while it is mostly empty), then the keys this one uses
    c.keys, c.rk = nil, nil
    collectgarbage()
    collectgarbage()
    c.keys = KEYED[w] and c.key_table()
    c.rk = RANDOM[w] and c.random_keys(w == "fillsync" and c.sync_num or c.num)
    local syncs0 = c.db:stats().wal_syncs
    local t0 = uv.hrtime()
    local n = ops[w](c, tasks)
    local secs = (uv.hrtime() - t0) / 1e9
    local syncs = c.db:stats().wal_syncs - syncs0
    if WRITES[w] then
      check(c.db:flush())
    end
    if c.settle then
      settle()
    end
    local row = { workload = w, mode = mode, ops = n, secs = secs, ops_per_s = n / secs,
      note = c.note, syncs = syncs }
    c.keys, c.rk = nil, nil
    rows[#rows + 1] = row
    c.out(fmt("  %-9s %-10s %9d ops in %7.3f s: %10.0f ops/s%s\n", mode, w, n, secs, n / secs,
      row.note and ("  (" .. row.note .. ")") or ""))
  end
  check(c.db:close())
  c.db = nil
  return rows
end

-- Sync puts from `tasks` tasks: ops/s and fsyncs per write.
local function run_sync(c, tasks)
  fresh_db(c)
  local n = math.max(c.sync_num, 16 * tasks)
  local before = c.db:stats()
  local keys = c.random_keys(n)
  local t0 = uv.hrtime()
  random_puts(c, tasks, n, c.sync, keys)
  local secs = (uv.hrtime() - t0) / 1e9
  local after = c.db:stats()
  local syncs = after.wal_syncs - before.wal_syncs
  check(c.db:close())
  c.db = nil
  local row = { tasks = tasks, ops = n, secs = secs, ops_per_s = n / secs, fsyncs = syncs,
    per_write = syncs / n }
  c.out(fmt("  sync puts from %3d task(s): %6d ops in %6.3f s: %8.0f ops/s, %5d fsyncs, "
    .. "%.3f per write\n", tasks, n, secs, n / secs, syncs, syncs / n))
  return row
end

-- The row of the median ops/s of each workload over the rounds.
local function median_rows(rounds)
  local out = {}
  for i = 1, #rounds[1] do
    local all = {}
    for _, rows in ipairs(rounds) do
      all[#all + 1] = rows[i]
    end
    table.sort(all, function(a, b) return a.ops_per_s < b.ops_per_s end)
    out[i] = all[(#all + 1) // 2]
  end
  return out
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Runs the C bench (core/bench) with the same workloads, num, value size, mode and settings,
-- and parses its ops/s.
-- @tparam string path the kiwi_bench binary
-- @tparam table run { workloads, num, sync_num, rounds (1), value_size (100), mode ("prod"),
--   settings ({ name = value }: each becomes --set=name=value) }
-- @return { workload = ops/s } or nil, msg
function M.c_figures(path, run)
  local sets = {}
  for name, v in pairs(run.settings or {}) do
    sets[#sets + 1] = " " .. shell_quote("--set=" .. name .. "=" .. config.to_engine_string(v))
  end
  table.sort(sets)
  local cmd = fmt("%s --benchmarks=%s --num=%d --sync_num=%d --value_size=%d --rounds=%d "
    .. "--mode=%s%s --markdown=none --engines=kiwi 2>&1", shell_quote(path),
    table.concat(run.workloads, ","), run.num, run.sync_num, run.value_size or 100,
    run.rounds or 1, shell_quote(run.mode or "prod"), table.concat(sets))
  local p = io.popen(cmd, "r")
  if not p then
    return nil, "cannot run " .. path
  end
  local text = p:read("a")
  p:close()
  local figures, col = {}, nil
  for line in text:gmatch("[^\n]+") do
    if line:match("^|%s*workload%s*|") then
      col = nil
      local i = 0
      for cell in line:gmatch("|([^|]*)") do
        i = i + 1
        cell = cell:match("^%s*(.-)%s*$")
        if col == nil and (cell == "kiwi ops/s" or cell == "ops/s") then
          col = i
        end
      end
    elseif col and line:match("^|%s*%a") then
      local cells = {}
      for cell in line:gmatch("|([^|]*)") do
        cells[#cells + 1] = cell:match("^%s*(.-)%s*$")
      end
      local v = tonumber(cells[col])
      if v and figures[cells[1]] == nil then
        figures[cells[1]] = v
      end
    end
  end
  if next(figures) == nil then
    return nil, "no figures in the output of: " .. cmd .. "\n" .. text:sub(1, 2000)
  end
  return figures
end

local function default_c_bench()
  local env = os.getenv("KIWI_C_BENCH")
  if env and env ~= "" then
    return env
  end
  if uv.fs_stat("build/release/kiwi_bench") then
    return "build/release/kiwi_bench"
  end
end

-- `--set name=value,...` as settings, each value typed and checked as config.json's would be;
-- nil, msg for a malformed item or a bad value.
local function parse_settings(text)
  local settings = {}
  for item in text:gmatch("[^,]+") do
    local name, value = item:match("^%s*([%w_]+)%s*=%s*(.-)%s*$")
    if name == nil then
      return nil, fmt("expected name=value, got %q", item)
    end
    local v, err = config.parse(name, value)
    if v == nil then
      return nil, fmt("%s: %s", name, err)
    end
    settings[name] = v
  end
  return settings
end

--- The flags of `kiwi bench` (lua/kiwi/cli.lua adds them to the subcommand; M.run maps them).
M.cli_flags = {
  mode = { arg = "dev|prod", doc = "the engine mode of the benchmarked dbs (default prod)" },
  num = { arg = "N", int = true, doc = "keys and operations per workload (default 100000)" },
  rounds = { arg = "R", int = true, doc = "interleaved rounds; figures are medians (default 1)" },
  workloads = { arg = "LIST", doc = "comma-separated (default: all seven)" },
  modes = { arg = "LIST", doc = "comma-separated: blocking,task,tasks64 (default: all)" },
  ["sync-num"] = { arg = "N", int = true, doc = "sync puts in fillsync (default 2000)" },
  ["sync-tasks"] = { arg = "LIST", doc = "task counts for the group-commit table, or none "
    .. "(default 1,8,64,512)" },
  ["value-size"] = { arg = "N", int = true, doc = "value bytes (default 100)" },
  keys = { arg = "table|format", doc = "keys made before the timed loops, or formatted per "
    .. "operation (default table)" },
  ["c-bench"] = { arg = "PATH", doc = "the C bench to compare with, or none (default "
    .. "build/release/kiwi_bench if present)" },
  set = { arg = "LIST", doc = "engine settings of the benchmarked dbs, comma-separated "
    .. "name=value (e.g. sync_writes=true,block_size=8192)",
    check = function(v)
      local ok, err = parse_settings(v)
      return ok ~= nil, err
    end },
}

local function split_list(s, numbers)
  if type(s) ~= "string" then
    return s
  end
  local out = {}
  for item in s:gmatch("[^,%s]+") do
    if item ~= "none" then
      out[#out + 1] = numbers and math.tointeger(tonumber(item)) or item
    end
  end
  return out
end

-- Options as `kiwi bench` passes them (flag names with dashes, lists as text, files for out and
-- err; --data and --config do not apply: the bench makes its own directory) to M.run's.
local function from_cli(opts)
  local o = {}
  for k, v in pairs(opts) do
    o[(k:gsub("-", "_"))] = v
  end
  o.workloads = split_list(o.workloads)
  o.modes = split_list(o.modes)
  o.sync_tasks = split_list(o.sync_tasks, true)
  if o.set ~= nil then
    local settings, err = parse_settings(o.set)
    if settings == nil then
      error("--set: " .. err, 0)
    end
    o.settings, o.set = settings, nil
  end
  if o.c_bench == "none" then
    o.c_bench = false
  end
  if io.type(o.out) == "file" then
    local f = o.out
    o.out = function(text)
      f:write(text)
      f:flush()
    end
  end
  o.data, o.config, o.err, o.help = nil, nil, nil, nil
  return o
end

--- Runs the benchmark.
-- @tparam table opts
--   `num` (100000): keys and ops per workload; `workloads` (fillseq, fillrandom, overwrite,
--   readrandom, readseq, fillsync, fillbatch); `sync_num` (2000); `value_size` (100);
--   `modes` ({"blocking", "task", "tasks64"}); `sync_tasks` ({1, 8, 64, 512}, {} to skip);
--   `dir` (a fresh directory under $TMPDIR, removed at the end); `mode` ("prod") and `settings`
--   (config.json settings for kiwi.open); `c` (C ops/s by workload) or `c_bench` (path of
--   kiwi_bench to run; default $KIWI_C_BENCH or build/release/kiwi_bench if present; false: none);
--   `out` (function(text), default io.write); `seed` (42); `rounds` (1): the C bench and each
--   way run this many times, interleaved (C, blocking, task, tasks64; C, blocking, ...), and
--   every figure is the median; `keys` ("table": all keys made before the timed loops, as cheap
--   per operation as the C bench's; "format": string.format per operation); `settle` (true:
--   after each workload, wait until the background work has ended, as the C bench does; false
--   skips the wait, for tests).
-- @return { rows = {...}, sync = {...}, c = {...} | nil, num = n, ... }
function M.run(opts)
  opts = from_cli(opts or {})
  local c = {
    num = opts.num or 100000,
    sync_num = opts.sync_num or 2000,
    workloads = opts.workloads or DEFAULT_WORKLOADS,
    mode = opts.mode or "prod",
    settings = opts.settings or {},
    out = opts.out or io.write,
    -- A non-sync write passes no options when the db's default is non-sync (as it is unless
    -- settings say sync_writes = true): the call a Lua program makes, while an options table
    -- costs the binding a field lookup (~180 instructions a put, callgrind).
    nosync = (opts.settings or {}).sync_writes and { sync = false } or nil,
    sync = { sync = true },
    settle = opts.settle ~= false,
  }
  for _, w in ipairs(c.workloads) do
    if not ops[w] then
      error("kiwi.bench: unknown workload '" .. tostring(w) .. "'", 2)
    end
  end
  math.randomseed(opts.seed or 42)
  c.value_size = opts.value_size or 100
  c.values = value_maker(c.value_size)
  if opts.keys ~= nil and opts.keys ~= "table" and opts.keys ~= "format" then
    error("kiwi.bench: keys must be 'table' or 'format', not '" .. tostring(opts.keys) .. "'", 2)
  end
  c.key_table, c.random_keys = key_source(opts.keys or "table", c.num)
  local base = opts.dir
  local own_dir = base == nil
  if own_dir then
    base = check(uv.fs_mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/kiwi-bench-XXXXXX"))
  end
  c.dir = base .. "/db"
  local res = { num = c.num, sync_num = c.sync_num, workloads = c.workloads, rows = {},
    sync = {} }

  local cfig = opts.c
  local cpath = opts.c_bench
  if cfig == nil and cpath ~= false then
    cpath = cpath or default_c_bench()
    if cpath then
      c.out(fmt("C bench: %s\n", cpath))
    end
  else
    cpath = nil
  end

  -- Rounds outside, ways inside, the C bench first in each round: noise from the rest of the
  -- machine falls on all of them alike, and every figure is a median over the rounds.
  local ok, err = pcall(function()
    local modes = opts.modes or MODES
    local by_mode, c_rounds = {}, {}
    for round = 1, opts.rounds or 1 do
      if cpath then
        -- three rounds inside the C process, its median: a fresh process's first round pays
        -- for memory the kernel must zero (the memtable arenas), which this Lua process only
        -- pays in its first round, so one C round a Lua round would flatter Lua's fills
        local f, cerr = M.c_figures(cpath, { workloads = c.workloads, num = c.num,
          sync_num = c.sync_num, value_size = c.value_size, mode = c.mode,
          settings = c.settings, rounds = C_ROUNDS })
        if f then
          c_rounds[#c_rounds + 1] = f
          c.out(fmt("C (round %d): ", round))
          for _, w in ipairs(c.workloads) do
            c.out(fmt("%s %.0f  ", w, f[w] or 0))
          end
          c.out("\n")
        else
          c.out("C bench failed: " .. tostring(cerr) .. "\n")
        end
      end
      for _, mode in ipairs(modes) do
        sync_disks()
        c.out(fmt("%s (num %d, round %d):\n", mode, c.num, round))
        by_mode[mode] = by_mode[mode] or {}
        if mode == "blocking" then
          by_mode[mode][round] = run_mode(c, mode)
        else
          by_mode[mode][round] = kiwi.run(run_mode, c, mode)
        end
      end
    end
    if cfig == nil and #c_rounds > 0 then
      cfig = {}
      for _, w in ipairs(c.workloads) do
        local all = {}
        for _, f in ipairs(c_rounds) do
          all[#all + 1] = f[w]
        end
        table.sort(all)
        cfig[w] = all[(#all + 1) // 2]
      end
    end
    res.c = cfig
    for _, mode in ipairs(modes) do
      for _, r in ipairs(median_rows(by_mode[mode])) do
        r.c_ops_per_s = cfig and cfig[r.workload]
        r.ratio = r.c_ops_per_s and r.ops_per_s / r.c_ops_per_s
        res.rows[#res.rows + 1] = r
      end
    end
    local sync_tasks = opts.sync_tasks or { 1, 8, 64, 512 }
    if #sync_tasks > 0 then
      c.out("sync puts (group commit):\n")
      kiwi.run(function()
        for _, n in ipairs(sync_tasks) do
          res.sync[#res.sync + 1] = run_sync(c, n)
        end
      end)
    end
  end)
  if c.db then
    pcall(c.db.close, c.db)
  end
  if own_dir then
    rmtree(base)
  end
  if not ok then
    error(err, 0)
  end
  M.print(res, c.out)
  return res
end

-- ---- reports --------------------------------------------------------------------------------------

local function ratio_text(r)
  return r and fmt("%.2f", r) or "-"
end

--- The results as Markdown tables: ops/s per workload and mode (with Lua/C ratios), and the
-- sync puts by number of tasks.
function M.markdown(res)
  local out = {}
  local function add(s)
    out[#out + 1] = s
  end
  local modes, by = {}, {}
  for _, r in ipairs(res.rows) do
    if not by[r.mode] then
      by[r.mode] = {}
      modes[#modes + 1] = r.mode
    end
    by[r.mode][r.workload] = r
  end
  local head = "| workload |"
  local rule = "|---|"
  if res.c then
    head = head .. " C ops/s |"
    rule = rule .. "---:|"
  end
  for _, m in ipairs(modes) do
    head = head .. fmt(" %s ops/s |", m)
    rule = rule .. "---:|"
    if res.c then
      head = head .. fmt(" %s / C |", m)
      rule = rule .. "---:|"
    end
  end
  add(head)
  add(rule)
  for _, w in ipairs(res.workloads) do
    local line = "| " .. w .. " |"
    if res.c then
      line = line .. (res.c[w] and fmt(" %.0f |", res.c[w]) or " - |")
    end
    for _, m in ipairs(modes) do
      local r = by[m][w]
      line = line .. (r and fmt(" %.0f |", r.ops_per_s) or " - |")
      if res.c then
        line = line .. " " .. ratio_text(r and r.ratio) .. " |"
      end
    end
    add(line)
  end
  if #res.sync > 0 then
    add("")
    add("| sync puts from | ops | ops/s | x one task | fsyncs | fsyncs per write |")
    add("|---:|---:|---:|---:|---:|---:|")
    local one = res.sync[1].tasks == 1 and res.sync[1].ops_per_s
    for _, s in ipairs(res.sync) do
      add(fmt("| %d task%s | %d | %.0f | %s | %d | %.4f |", s.tasks, s.tasks == 1 and "" or "s",
        s.ops, s.ops_per_s, one and fmt("%.1f", s.ops_per_s / one) or "-", s.fsyncs,
        s.per_write))
    end
  end
  return table.concat(out, "\n") .. "\n"
end

--- Prints the summary tables (M.markdown) through out (default io.write).
function M.print(res, out)
  out = out or io.write
  out("\n" .. M.markdown(res))
end

return M
