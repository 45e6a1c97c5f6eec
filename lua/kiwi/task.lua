--- kiwi.task: tasks on the luv loop (DESIGN §5). A task is a coroutine started by `run` or
-- `spawn`; inside it, a kiwi call that must wait yields to the loop and is resumed with its
-- result, so thousands of tasks share one thread, one loop and the engine's group commit.
--
--     local kiwi = require("kiwi")
--     kiwi.run(function()
--       local db = assert(kiwi.open("./data"))
--       local t = kiwi.spawn(function(k) return db:put(k, "v", { sync = true }) end, "k1")
--       print(kiwi.wait(t))                       --> true
--       db:close()
--     end)
--
-- How it works: the C side (core/binding/kiwi_loop.c) yields the task's coroutine with the marker
-- `core.WAIT`; when the work is done it puts the results on the coroutine's own stack and calls
-- the dispatcher registered here with the coroutine; the dispatcher resumes it (with no
-- arguments: no copy of the results stays on the main thread's stack) only if its task is still
-- waiting. `sleep` and `wait` yield
-- the same marker and are woken by a luv timer or by the task they wait for. New tasks and tasks
-- that yield anything else (a plain `coroutine.yield()`) go to a ready queue that a luv idle
-- handle drains, at most READY_MAX per loop iteration and for about READY_BUDGET, so timers and
-- I/O keep their turn.
--
-- Errors: a task that raises is finished as failed; its traceback is kept, its to-be-closed
-- variables are closed (coroutine.close), and, unless a task is already waiting for it, the error
-- handler is called (default: a line on stderr; see `on_error`). Other tasks go on.
-- @module kiwi.task

local core = require("kiwi.core")
local uv = require("luv")

local co_create = coroutine.create
local co_resume = coroutine.resume
local co_running = coroutine.running
local co_status = coroutine.status
local co_yield = coroutine.yield
local co_close = coroutine.close
local traceback = debug.traceback
local pack = table.pack
local unpack = table.unpack
local select = select
local ipairs = ipairs
local pairs = pairs
local error = error
local pcall = pcall
local tostring = tostring
local type = type
local setmetatable = setmetatable
local getmetatable = getmetatable
local stderr = io.stderr

local M = {}

local WAIT = core.WAIT
local READY_MAX = 256    -- tasks resumed from the ready queue per loop iteration, at most
local READY_BUDGET = 1e6 -- ns: no more are started in an iteration once this much time went by
local hrtime = uv.hrtime

local by_co = core.tasks -- coroutine -> task (weak keys); the C side reads it
local alive = {}         -- task -> true until it finishes (strong: a waiting task is not lost)
local nalive = 0
local next_id = 0

local queue, qhead, qtail = {}, 1, 0
local idle, idle_on = nil, false
local running_loop = false -- kiwi.run is driving the loop

local Task = {}
Task.__index = Task
Task.__name = "kiwi.task"

local function default_handler(err, task)
  stderr:write("kiwi: task ", tostring(task.id), " failed: ", tostring(err), "\n")
end

local handler = default_handler

--- The task running now, or nil outside a task (also inside a coroutine kiwi did not start).
-- @treturn kiwi.task|nil
function M.current()
  local co, ismain = co_running()
  if ismain then
    return nil
  end
  return by_co[co]
end

local current = M.current

local resume -- forward

local function on_idle()
  local limit, n = qtail, 0
  local deadline = hrtime() + READY_BUDGET
  while qhead <= limit and n < READY_MAX do
    local t = queue[qhead]
    queue[qhead] = nil
    qhead = qhead + 1
    n = n + 1
    if t.state == "ready" then
      resume(t)
      if hrtime() > deadline then
        break -- the rest in the next iteration: timers and I/O first
      end
    end
  end
  if qhead > qtail then
    queue, qhead, qtail = {}, 1, 0
    idle:stop()
    idle_on = false
  end
end

local function make_ready(t)
  t.state = "ready"
  qtail = qtail + 1
  queue[qtail] = t
  if not idle_on then
    idle = idle or uv.new_idle()
    idle:start(on_idle)
    idle_on = true
  end
end

local function report(t)
  local ok, err = pcall(handler, t.err, t)
  if not ok then
    stderr:write("kiwi: the task error handler failed: ", tostring(err), "\n")
  end
end

-- The coroutine of t ended: record how, wake its waiters.
local function finish(t, ok, ...)
  local co = t.co
  by_co[co] = nil
  if alive[t] then
    alive[t] = nil
    nalive = nalive - 1
  end
  if ok then
    t.state = "done"
    t.results = pack(...)
  else
    local err = ...
    t.traceback = traceback(co)
    if type(err) == "string" or type(err) == "number" then
      err = tostring(err) .. "\n" .. t.traceback
    end
    t.state = "failed"
    t.err = err
    co_close(co) -- closes its to-be-closed variables (scans, snapshots)
  end
  -- A finished task keeps its results, not its coroutine: every live coroutine costs the
  -- garbage collector's atomic step (which cannot be split) up to a microsecond, and a program
  -- holding 10,000 finished task handles would pay it for nothing.
  t.co = nil
  local waiters = t.waiters
  t.waiters = nil
  if waiters then
    for _, w in ipairs(waiters) do
      if w.state == "waiting" then
        make_ready(w)
      end
    end
  elseif not ok and not t.main then
    report(t)
  end
  if nalive == 0 and running_loop then
    uv.stop()
  end
end

local function after(t, ok, first, ...)
  if co_status(t.co) == "dead" then
    return finish(t, ok, first, ...)
  end
  if first == WAIT then
    t.state = "waiting"
  else
    make_ready(t) -- a plain coroutine.yield inside a task: go on in the next iteration
  end
end

resume = function(t, ...)
  t.state = "running"
  t.nresumes = t.nresumes + 1
  return after(t, co_resume(t.co, ...))
end

-- C completions call this as dispatch(co), the results already on co's stack.
core.set_dispatch(function(co)
  local t = by_co[co]
  if t ~= nil and t.state == "waiting" then
    resume(t)
  end
end)

local function new_task(fn, ...)
  if type(fn) ~= "function" then
    local mt = getmetatable(fn)
    if not (mt and mt.__call) then
      error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 3)
    end
  end
  next_id = next_id + 1
  local t = setmetatable({ id = next_id, state = "ready", args = pack(...), nresumes = 0 }, Task)
  t.co = co_create(function()
    local args = t.args -- the arguments live in the task's own frame, not in the scheduler's
    t.args = nil
    return fn(unpack(args, 1, args.n))
  end)
  by_co[t.co] = t
  alive[t] = true
  nalive = nalive + 1
  return t
end

--- Starts `fn(...)` as a new task. It begins in a later turn of the loop, not before spawn
-- returns; outside `kiwi.run` it begins when the luv loop next runs.
-- @tparam function fn
-- @return a kiwi.task handle
function M.spawn(fn, ...)
  local t = new_task(fn, ...)
  make_ready(t)
  return t
end

-- Yields the current task until something calls resume on it.
local function wait_here()
  return co_yield(WAIT)
end

-- Stopped timers kept for the next sleep: no handle is created or closed per sleep (a handle
-- closed just before the Lua state closes trips luv 1.44's close callback on freed memory).
local spare_timers = {}
local SPARE_MAX = 256

--- Pauses the current task for `ms` milliseconds (a luv timer). Outside a task: blocks.
-- @tparam number ms
function M.sleep(ms)
  if type(ms) ~= "number" or ms < 0 then
    error("bad argument #1 to 'sleep' (non-negative number expected)", 2)
  end
  local t = current()
  if t == nil then
    uv.sleep(math.floor(ms))
    return
  end
  local timer = table.remove(spare_timers) or uv.new_timer()
  timer:start(math.floor(ms), 0, function()
    timer:stop()
    if #spare_timers < SPARE_MAX then
      spare_timers[#spare_timers + 1] = timer
    else
      timer:close()
    end
    if t.state == "waiting" then
      resume(t)
    end
  end)
  wait_here()
end

--- Lets the other ready tasks run, then continues (a no-op outside a task).
function M.yield()
  if current() ~= nil then
    co_yield()
  end
end

local function finished(t)
  return t.state == "done" or t.state == "failed"
end

local function outcome(t)
  if t.state == "done" then
    return unpack(t.results, 1, t.results.n)
  end
  return nil, t.err
end

local function packed_outcome(t)
  if t.state == "done" then
    return t.results
  end
  return { nil, t.err, n = 2 }
end

local function check_task(t, i)
  if getmetatable(t) ~= Task then
    error("bad argument #" .. i .. " to 'wait' (kiwi.task expected, got " .. type(t) .. ")", 3)
  end
end

--- Waits until every given task has finished.
-- With one task: returns its results, or nil, err if it failed (err carries its traceback).
-- With several: returns one table per task, `{ n = k, ... }` with its results or `{ nil, err }`.
-- Inside a task it yields; outside one it runs the luv loop until they finish (it may not be
-- called from a plain luv callback while the loop runs).
function M.wait(...)
  local n = select("#", ...)
  if n == 1 then
    local t = ...
    check_task(t, 1)
    if finished(t) then
      return outcome(t) -- the common case of a wait loop over many tasks: no table, no lookup
    end
  end
  local tasks = { ... }
  for i = 1, n do
    check_task(tasks[i], i)
  end
  local me = current()
  for i = 1, n do
    local t = tasks[i]
    if t == me then
      error("kiwi.wait: a task cannot wait for itself", 2)
    end
    while not finished(t) do
      if me then
        t.waiters = t.waiters or {}
        t.waiters[#t.waiters + 1] = me
        wait_here()
      else
        if uv.loop_mode() ~= nil then
          error("kiwi.wait: cannot wait outside a task while the loop runs (wait from a task)", 2)
        end
        if not uv.run("once") and not finished(t) and qhead > qtail then
          error("kiwi.wait: task " .. t.id .. " can never finish (nothing left on the loop)", 2)
        end
      end
    end
  end
  if n == 1 then
    return outcome(tasks[1])
  end
  local out = {}
  for i = 1, n do
    out[i] = packed_outcome(tasks[i])
  end
  return unpack(out, 1, n)
end

-- The loop stopped with tasks unfinished: fail them and close their coroutines. A C request still
-- in flight for one of them is delivered later and dropped (its task no longer waits).
local function abandon_all(why)
  local left = {}
  for t in pairs(alive) do
    left[#left + 1] = t
  end
  table.sort(left, function(a, b) return a.id < b.id end)
  for _, t in ipairs(left) do
    alive[t] = nil
    nalive = nalive - 1
    by_co[t.co] = nil
    t.state = "failed"
    t.err = why
    t.traceback = traceback(t.co)
    co_close(t.co)
    if not t.main then
      report(t)
    end
  end
  queue, qhead, qtail = {}, 1, 0
  if idle_on then
    idle:stop()
    idle_on = false
  end
  return #left
end

--- log2 of the incremental collector's step size (in bytes) that `run` sets, or nil to leave the
-- collector alone. Lua's default, 13 (8 KiB of allocation between steps), makes each step sweep
-- about 50,000 objects: with thousands of tasks alive that is a 5-15 ms pause of the loop in one
-- step. 9 makes the steps 16 times smaller (and 16 times more frequent: the same total work).
M.gc_stepsize = 9

-- Applies M.gc_stepsize (incremental mode only: a program that chose the generational collector
-- keeps it).
local function tune_gc()
  local ss = M.gc_stepsize
  if math.type(ss) == "integer" then
    local prev = collectgarbage("incremental", 0, 0, ss)
    if prev == "generational" then
      collectgarbage("generational")
    end
  end
end

--- Runs `fn(...)` as a task and drives the luv loop until every task has finished (plain luv
-- handles still open then stay on the loop for a later uv.run). Returns fn's results; if fn
-- failed, raises its error (a string error carries the task's traceback).
-- @tparam function fn
function M.run(fn, ...)
  if current() ~= nil then
    error("kiwi.run: called inside a task (use kiwi.spawn and kiwi.wait)", 2)
  end
  if uv.loop_mode() ~= nil then
    error("kiwi.run: the luv loop is already running (use kiwi.spawn)", 2)
  end
  tune_gc()
  local main = new_task(fn, ...)
  main.main = true
  make_ready(main)
  running_loop = true
  local ok, err = pcall(uv.run, "default")
  running_loop = false
  if not ok then
    abandon_all("kiwi.run: the loop raised: " .. tostring(err))
    error(err, 0)
  end
  if nalive > 0 then
    local main_done = finished(main)
    local n = abandon_all("kiwi.run: the loop stopped before the task finished")
    if not main_done then
      error("kiwi.run: the loop stopped with " .. n .. " unfinished task(s): nothing was left "
        .. "to wake them, or uv.stop() was called", 2)
    end
  end
  if main.state == "done" then
    return unpack(main.results, 1, main.results.n)
  end
  error(main.err, 0)
end

--- Sets the function called with (err, task) when a task fails and no task waits for it.
-- nil restores the default (a line on stderr). Returns the previous handler.
function M.on_error(fn)
  if fn ~= nil and type(fn) ~= "function" then
    error("bad argument #1 to 'on_error' (function expected, got " .. type(fn) .. ")", 2)
  end
  local old = handler
  handler = fn or default_handler
  return old
end

--- Number of unfinished tasks.
function M.count()
  return nalive
end

-- ---- task handles -------------------------------------------------------------------------------

--- "ready", "running", "waiting", "done" or "failed".
function Task:status()
  return self.state
end

--- True once the task has finished (done or failed).
function Task:done()
  return finished(self)
end

--- The results of a finished task, or nil, err for a failed one; raises if it has not finished.
function Task:result()
  if not finished(self) then
    error("kiwi.task " .. self.id .. " has not finished", 2)
  end
  return outcome(self)
end

--- How many times the task has been resumed: 1 + the number of times it yielded so far (a call
-- that returns without the count changing did not yield). For tests and diagnostics.
function Task:resumes()
  return self.nresumes
end

function Task:__tostring()
  return "kiwi.task " .. self.id .. " (" .. self.state .. ")"
end

return M
