-- spec/helper.lua: shared support of the busted specs (named by .busted as the helper).
--
--  * helper.tmpdir(): a fresh directory under $TMPDIR (or /tmp) made with uv.fs_mkdtemp, removed
--    when the test ends (a subscriber to busted's "test end" event calls helper.cleanup).
--  * helper.lua_bin and helper.child_env(): run child lua5.4 processes that find the same modules
--    (absolute LUA_PATH/LUA_CPATH built from this process's package paths); helper.lua_shell is
--    lua5.4 as a word of a shell command.
--  * helper.run_lua(dir, code, ...): write `code` to a script in dir, run it to completion with
--    io.popen, return its stdout and exit code.
--  * helper.files(dir, suffix): the names in dir ending with suffix, sorted.
--  * helper.both_modes(it): an `it` that defines each test twice, "[blocking]" as written and
--    "[task]" run inside kiwi.run (helper.in_task), so one spec checks both modes of the API.
--  * Sanitizer runs: scripts/run-specs preloads $KIWI_PRELOAD (libasan or libtsan) into lua5.4
--    only. The helper takes LD_PRELOAD out of this process's environment, so a shell started by
--    io.popen is not instrumented (sh and bash crash under a preloaded libtsan), and gives it back
--    to every child lua5.4 (helper.child_env, helper.run_lua), which loads the same module.
local uv = require("luv")

local helper = {}

helper.lua_bin = os.getenv("KIWI_LUA") or "lua5.4"
helper.preload = os.getenv("KIWI_PRELOAD")
if helper.preload == "" then
  helper.preload = nil
end
if helper.preload then
  uv.os_unsetenv("LD_PRELOAD")
end

local function tmpbase()
  local t = os.getenv("TMPDIR")
  if t == nil or t == "" then
    t = "/tmp"
  end
  return t
end

--- Removes path and everything under it (no error if it does not exist).
function helper.rmtree(path)
  local st = uv.fs_lstat(path)
  if not st then
    return
  end
  if st.type == "directory" then
    local req = uv.fs_scandir(path)
    if req then
      while true do
        local name = uv.fs_scandir_next(req)
        if not name then
          break
        end
        helper.rmtree(path .. "/" .. name)
      end
    end
    assert(uv.fs_rmdir(path))
  else
    assert(uv.fs_unlink(path))
  end
end

local made = {} -- directories made during the current test

--- A fresh temporary directory, removed when the current test ends.
function helper.tmpdir()
  local dir = assert(uv.fs_mkdtemp(tmpbase() .. "/kiwi-spec-XXXXXX"))
  made[#made + 1] = dir
  return dir
end

--- Removes every directory helper.tmpdir made so far (run after each test).
function helper.cleanup()
  for i = #made, 1, -1 do
    pcall(helper.rmtree, made[i])
    made[i] = nil
  end
end

-- After each test (busted's "test end" event), remove its directories. Handles a failed test left
-- open are closed later by __gc; removing their directory first is harmless on POSIX.
do
  local ok, busted = pcall(require, "busted")
  if ok and type(busted) == "table" and busted.subscribe then
    busted.subscribe({ "test", "end" }, function()
      helper.cleanup()
      return nil, true
    end)
  end
end

--- Names in dir ending with suffix (e.g. ".sst"), sorted.
function helper.files(dir, suffix)
  local out = {}
  local req = uv.fs_scandir(dir)
  while req do
    local name = uv.fs_scandir_next(req)
    if not name then
      break
    end
    if suffix == nil or name:sub(-#suffix) == suffix then
      out[#out + 1] = name
    end
  end
  table.sort(out)
  return out
end

local function absolute(paths)
  local cwd = uv.cwd()
  return (paths:gsub("[^;]+", function(p)
    if p:sub(1, 1) ~= "/" then
      return cwd .. "/" .. p:gsub("^%./", "")
    end
    return p
  end))
end

helper.lua_path = absolute(package.path)
helper.lua_cpath = absolute(package.cpath)

--- The environment of a child lua process, as a list of "NAME=value" (for uv.spawn).
function helper.child_env()
  local env = {
    "LUA_PATH=" .. helper.lua_path,
    "LUA_CPATH=" .. helper.lua_cpath,
    "PATH=" .. (os.getenv("PATH") or "/usr/bin:/bin"),
  }
  -- passed through so the specs also run under a sanitizer build (LD_PRELOAD=libasan.so ...)
  for _, name in ipairs({ "TMPDIR", "HOME", "ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS" }) do
    if os.getenv(name) then
      env[#env + 1] = name .. "=" .. os.getenv(name)
    end
  end
  if helper.preload then
    env[#env + 1] = "LD_PRELOAD=" .. helper.preload
  end
  return env
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
helper.shell_quote = shell_quote

--- lua5.4 as a word of a shell command: with the sanitizer runtime preloaded in sanitizer runs.
helper.lua_shell = (helper.preload and ("LD_PRELOAD=" .. shell_quote(helper.preload) .. " ") or "")
  .. helper.lua_bin

--- Writes code to dir/name.lua; returns the path.
function helper.write_script(dir, name, code)
  local path = dir .. "/" .. name .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  return path
end

--- Runs `code` in a child lua with the same module paths; extra arguments become its `arg`.
-- @return stdout (string), exit code (integer)
function helper.run_lua(dir, code, ...)
  local script = helper.write_script(dir, "child", code)
  local parts = {
    "LUA_PATH=" .. shell_quote(helper.lua_path),
    "LUA_CPATH=" .. shell_quote(helper.lua_cpath),
    helper.lua_shell, shell_quote(script),
  }
  for _, a in ipairs({ ... }) do
    parts[#parts + 1] = shell_quote(a)
  end
  local p = assert(io.popen(table.concat(parts, " ") .. " 2>&1", "r"))
  local out = p:read("a")
  local _, _, code_ = p:close()
  return out, code_
end

--- Runs `lua script args...` as a child process and SIGKILLs it after delay_ms unless it
-- exited first (a crash test's child). stderr is captured, or with inherit_stderr passed through
-- to ours. Returns its stdout, stderr ("" when inherited), exit code and signal.
function helper.run_and_kill(script, args, delay_ms, inherit_stderr)
  local out, err = {}, {}
  local stdout = uv.new_pipe(false)
  local stderr = not inherit_stderr and uv.new_pipe(false) or nil
  local exited, code, signal = false, nil, nil
  local argv = { script }
  for i = 1, #args do
    argv[#argv + 1] = tostring(args[i])
  end
  local handle
  handle = assert(uv.spawn(helper.lua_bin, {
    args = argv,
    stdio = { nil, stdout, stderr or 2 },
    env = helper.child_env(),
  }, function(c, s)
    exited, code, signal = true, c, s
    handle:close()
  end))
  local function reader(buf, pipe)
    return function(e, data)
      assert(not e, e)
      if data then
        buf[#buf + 1] = data
      else
        pipe:close()
      end
    end
  end
  stdout:read_start(reader(out, stdout))
  if stderr then
    stderr:read_start(reader(err, stderr))
  end
  local timer = uv.new_timer()
  timer:start(delay_ms, 0, function()
    timer:close()
    if not exited then
      uv.process_kill(handle, "sigkill")
    end
  end)
  uv.run()
  return table.concat(out), table.concat(err), code, signal
end

--- Runs db:compact_range(start, stop). Returns true, or false when this build of the engine has
-- no compaction yet (invalid argument "... not part of this build ..."); raises on other failures.
function helper.compact(db, start, stop)
  local ok, msg, code = db:compact_range(start, stop)
  if ok then
    return true
  end
  if code == "invalid argument" and tostring(msg):find("not part of this build", 1, true) then
    return false
  end
  error("compact_range failed: " .. tostring(msg), 2)
end

--- Opens dir with kiwi.open (mode "dev" unless opts says otherwise) and returns the db; raises
-- with the engine's message and code when the open fails.
function helper.open_db(dir, opts)
  opts = opts or {}
  opts.mode = opts.mode or "dev"
  local db, msg, code = require("kiwi").open(dir, opts)
  assert(db, tostring(msg) .. " (" .. tostring(code) .. ")")
  return db
end

--- Runs body(...) as a kiwi task (kiwi.run drives the luv loop until every task finished), then
-- checks that no engine request is left in flight. Returns body's results; raises its error.
function helper.in_task(body, ...)
  local kiwi = require("kiwi")
  local res = table.pack(kiwi.run(body, ...))
  local left = require("kiwi.core").pending()
  assert(left == 0, left .. " kiwi request(s) still in flight after kiwi.run")
  return table.unpack(res, 1, res.n)
end

--- Wraps busted's `it` so each test runs twice: blocking, and inside a task.
-- @usage local it = helper.both_modes(it)
function helper.both_modes(it_)
  return function(name, body)
    it_(name .. " [blocking]", body)
    it_(name .. " [task]", function()
      helper.in_task(body)
    end)
  end
end

--- Reads a whole file.
function helper.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- A string of every byte value 0..255 in order.
function helper.all_bytes()
  local t = {}
  for i = 0, 255 do
    t[#t + 1] = string.char(i)
  end
  return table.concat(t)
end

return helper
