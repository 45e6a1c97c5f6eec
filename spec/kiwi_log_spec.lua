-- spec/kiwi_log_spec.lua: kiwi.log (lua/kiwi/log.lua): JSON lines that parse, named loggers with
-- levels checked before formatting, size-based rotation, the TCP broadcast server (every line to
-- every client, a slow client dropped), `kiwi logs` against it, and engine events.
local cjson = require("cjson")
local helper = require("spec.helper")
local log = require("kiwi.log")
local uv = require("luv")

local q = helper.shell_quote

-- Runs the luv loop until cond() is true or `ms` pass; returns cond().
local function run_until(cond, ms)
  local deadline = uv.now() + (ms or 3000)
  while not cond() and uv.now() < deadline do
    uv.run("once")
    uv.update_time()
  end
  return cond()
end

-- A TCP client of the log server that collects the lines it receives.
local function client(port)
  local c = { tcp = uv.new_tcp(), lines = {}, buf = "", connected = false }
  c.tcp:connect("127.0.0.1", port, function(err)
    assert(not err, err)
    c.connected = true
    c.tcp:read_start(function(rerr, chunk)
      if rerr or not chunk then
        c.closed = true
        return
      end
      local start = 1
      while true do
        local nl = chunk:find("\n", start, true)
        if not nl then
          break
        end
        c.lines[#c.lines + 1] = c.buf .. chunk:sub(start, nl - 1)
        c.buf, start = "", nl + 1
      end
      c.buf = c.buf .. chunk:sub(start)
    end)
  end)
  return c
end

local function close_all(...)
  for _, c in ipairs({ ... }) do
    if not c.tcp:is_closing() then
      c.tcp:close()
    end
  end
  log.close()
  run_until(function() return not uv.loop_alive() end, 1000)
end

local function file_lines(path)
  local out = {}
  local f = io.open(path, "r")
  if not f then
    return out
  end
  for l in f:lines() do
    out[#out + 1] = l
  end
  f:close()
  return out
end

describe("kiwi.log", function()
  after_each(function()
    log.close()
    run_until(function() return not uv.loop_alive() end, 1000)
  end)

  describe("lines", function()
    it("are JSON objects with ts, level, logger, event and the fields", function()
      local line = log.format_line("info", "repl", "flush", { ms = 3.25, bytes = 4096, ok = true,
        key = "a\0b\255\"\\", nested = { 1, 2 }, obj = { x = "y" }, level = "shadowed" })
      assert.equal("\n", line:sub(-1))
      local rec = cjson.decode(line)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", rec.ts)
      assert.equal("info", rec.level)
      assert.equal("repl", rec.logger)
      assert.equal("flush", rec.event)
      assert.equal(3.25, rec.ms)
      assert.equal(4096, rec.bytes)
      assert.equal(true, rec.ok)
      assert.same({ 1, 2 }, rec.nested)
      assert.same({ x = "y" }, rec.obj)
      assert.equal("shadowed", rec._level)
      -- every byte outside printable ASCII is \u00XX: the bytes come back through latin1_bytes
      assert.truthy(line:find('"key":"a\\u0000b\\u00ff\\"\\\\"', 1, true), line)
      assert.equal("a\0b\255\"\\", require("kiwi").latin1_bytes(rec.key))
      -- the four fixed keys come first
      assert.matches('^{"ts":"[^"]+","level":"info","logger":"repl","event":"flush","', line)
    end)

    it("check the level before formatting anything", function()
      assert(log.configure({ level = "info" }))
      local L = log.new("spec")
      local touched = false
      local fields = setmetatable({}, { __pairs = function()
        touched = true
        return next, {}, nil
      end })
      L:debug("quiet", fields)
      assert.is_false(touched)
      L:set_level("debug")
      assert.is_true(log.enabled("spec", "debug"))
      L:debug("loud", fields)
      assert.is_true(touched)
      assert.equal(L, log.new("spec"))
      L:set_level(nil)
      assert.is_false(log.enabled("spec", "debug"))
      assert.has_error(function() L:set_level("loud") end)
    end)
  end)

  describe("the file", function()
    it("rotates by size and keeps files_keep old files", function()
      local dir = helper.tmpdir() .. "/logs"
      assert(log.configure({ dir = dir, level = "debug", file_max_bytes = 1000, files_keep = 2 }))
      local L = log.new("rot")
      for i = 1, 100 do
        L:info("line", { i = i, pad = string.rep("x", 40) })
      end
      log.close()
      assert.same({ "kiwi.log", "kiwi.log.1", "kiwi.log.2" }, helper.files(dir))
      local all = {}
      for _, name in ipairs({ "kiwi.log.2", "kiwi.log.1", "kiwi.log" }) do
        local st = assert(uv.fs_stat(dir .. "/" .. name))
        assert.is_true(st.size <= 1000, name)
        for _, l in ipairs(file_lines(dir .. "/" .. name)) do
          all[#all + 1] = cjson.decode(l).i
        end
      end
      -- the kept files hold the newest lines, in order, with none missing in between
      assert.is_true(#all > 10)
      assert.equal(100, all[#all])
      for k = 2, #all do
        assert.equal(all[k - 1] + 1, all[k])
      end
    end)

    it("appends to an existing file and removes files beyond a smaller files_keep", function()
      local dir = helper.tmpdir() .. "/logs"
      assert(log.configure({ dir = dir, file_max_bytes = 300, files_keep = 4 }))
      for i = 1, 40 do
        log.new("a"):info("x", { i = i })
      end
      assert.same({ "kiwi.log", "kiwi.log.1", "kiwi.log.2", "kiwi.log.3", "kiwi.log.4" }, helper.files(dir))
      assert(log.update({ files_keep = 1 }))
      log.rotate()
      assert.same({ "kiwi.log", "kiwi.log.1" }, helper.files(dir))
      log.new("a"):info("after")
      log.close()
      assert(log.configure({ dir = dir, file_max_bytes = 300, files_keep = 1 }))
      log.new("a"):info("reopened")
      local lines = file_lines(dir .. "/kiwi.log")
      assert.equal("after", cjson.decode(lines[1]).event)
      assert.equal("reopened", cjson.decode(lines[2]).event)
    end)

    it("validates before applying", function()
      assert.is_nil((log.configure({ level = "loud" })))
      local ok, msg = log.configure({ port = 70000 })
      assert.is_nil(ok)
      assert.matches("out of range", msg)
      assert.is_nil(log.port())
    end)
  end)

  describe("the TCP broadcast server", function()
    it("streams every line to every client", function()
      local dir = helper.tmpdir() .. "/logs"
      assert(log.configure({ dir = dir, port = 0, level = "debug" }))
      local port = log.port()
      assert.is_true(port > 0)
      assert.equal(port .. "\n", helper.read_file(dir .. "/kiwi.port"))
      assert.equal(port, log.read_port(dir:gsub("/logs$", "")))
      local a, b = client(port), client(port)
      assert.is_true(run_until(function() return log.clients() == 2 end))
      local L = log.new("net")
      for i = 1, 50 do
        L:info("tick", { i = i, key = "k\0" .. i })
      end
      assert.is_true(run_until(function() return #a.lines == 50 and #b.lines == 50 end))
      for i = 1, 50 do
        local ra, rb = cjson.decode(a.lines[i]), cjson.decode(b.lines[i])
        assert.equal(i, ra.i)
        assert.equal("tick", rb.event)
        assert.equal(a.lines[i], b.lines[i])
      end
      -- the file got the same lines
      local fl = file_lines(dir .. "/kiwi.log")
      assert.equal(a.lines[50], fl[#fl])
      -- a client that leaves is forgotten
      a.tcp:close()
      assert.is_true(run_until(function() return log.clients() == 1 end))
      close_all(b)
      assert.is_nil(io.open(dir .. "/kiwi.port"))
    end)

    it("drops a client that does not read instead of slowing down", function()
      assert(log.configure({ port = 0, client_queue_limit = 64 * 1024 }))
      local slow = { tcp = uv.new_tcp() }
      slow.tcp:connect("127.0.0.1", log.port(), function() end) -- never reads
      local fast = client(log.port())
      assert.is_true(run_until(function() return log.clients() == 2 end))
      local L = log.new("flood")
      local pad = string.rep("p", 1000)
      local t0 = uv.hrtime()
      local n = 0
      while log.stats().dropped_clients == 0 and n < 200000 do
        n = n + 1
        L:info("flood", { n = n, pad = pad })
        if n % 500 == 0 then
          uv.run("nowait") -- the fast client keeps reading
        end
      end
      local ms = (uv.hrtime() - t0) / 1e6
      assert.equal(1, log.stats().dropped_clients)
      assert.equal(1, log.clients())
      assert.is_true(ms < 5000, "took " .. ms .. " ms")
      -- the fast client still gets lines, including the warning about the drop
      L:info("after")
      assert.is_true(run_until(function()
        return #fast.lines > 0 and fast.lines[#fast.lines]:find('"event":"after"', 1, true) ~= nil
      end, 5000))
      local saw_warning = false
      for _, l in ipairs(fast.lines) do
        if l:find('"event":"log_client_dropped"', 1, true) then
          saw_warning = true
        end
      end
      assert.is_true(saw_warning)
      close_all(slow, fast)
    end)

    it("refuses a port in use with a message", function()
      local other = uv.new_tcp()
      assert(other:bind("127.0.0.1", 0))
      assert(other:listen(1, function() end))
      local port = other:getsockname().port
      local ok, msg = log.configure({ port = port })
      assert.is_nil(ok)
      assert.matches("cannot listen on 127.0.0.1:" .. port, msg)
      other:close()
    end)
  end)

  describe("kiwi logs", function()
    it("pretty-prints the stream with level filtering", function()
      assert(log.configure({ port = 0, level = "debug" }))
      local dir = helper.tmpdir()
      local outpath = dir .. "/out.txt"
      local cmd = string.format("LUA_PATH=%s LUA_CPATH=%s %s scripts/kiwi logs --port %d --level info"
        .. " --count 3 > %s 2>&1", q(helper.lua_path), q(helper.lua_cpath), helper.lua_shell, log.port(),
        q(outpath))
      local child = uv.spawn("/bin/sh", { args = { "-c", cmd } }, function() end)
      local done = false
      child = child or error("spawn failed")
      assert.is_true(run_until(function() return log.clients() == 1 end, 5000))
      local L = log.new("tail")
      L:debug("hidden", { n = 0 })
      L:info("first", { n = 1 })
      L:warn("second", { n = 2, s = "two words" })
      L:error("third", { n = 3 })
      assert.is_true(run_until(function()
        done = log.clients() == 0
        return done
      end, 5000))
      child:close()
      local out = helper.read_file(outpath)
      local lines = {}
      for l in out:gmatch("[^\n]+") do
        lines[#lines + 1] = l
      end
      assert.equal(3, #lines, out)
      assert.matches("^%d%d:%d%d:%d%d%.%d%d%d INFO  tail first n=1$", lines[1])
      assert.matches("^%d%d:%d%d:%d%d%.%d%d%d WARN  tail second n=2 s=two words$", lines[2])
      assert.matches("^%d%d:%d%d:%d%d%.%d%d%d ERROR tail third n=3$", lines[3])
    end)

    it("says when there is nothing to connect to", function()
      local dir = helper.tmpdir()
      local p = io.popen(string.format("LUA_PATH=%s LUA_CPATH=%s %s scripts/kiwi logs --data %s 2>&1",
        q(helper.lua_path), q(helper.lua_cpath), helper.lua_shell, q(dir)))
      local out = p:read("a")
      local _, _, code = p:close()
      assert.equal(1, code)
      assert.matches("logs/kiwi.port does not exist", out)
    end)

    it("colours levels for a terminal", function()
      local line = log.format_line("warn", "x", "ev", { a = 1 })
      local plain = log.pretty(line, false)
      assert.matches("WARN  x ev a=1$", plain)
      local coloured = log.pretty(line, true)
      assert.truthy(coloured:find("\27[33mWARN \27[0m", 1, true), coloured)
      assert.equal("not json", (log.pretty("not json")))
    end)
  end)

  describe("engine events", function()
    it("arrive in the log through the binding's bridge", function()
      local dir = helper.tmpdir()
      local logs = dir .. "/logs"
      assert(log.configure({ dir = logs, level = "debug" }))
      local kiwi = require("kiwi")
      local db, msg = kiwi.open(dir .. "/data", { mode = "dev", on_event = log.engine_event })
      local how = "on_event"
      if not db and tostring(msg):find("on_event", 1, true) then
        db = assert(kiwi.open(dir .. "/data", { mode = "dev" }))
        how = db.poll_events and "poll_events" or nil
      end
      if not how then
        db:close()
        pending("the binding has no event bridge yet (kiwi.open on_event / db:poll_events)")
        return
      end
      for i = 1, 25 do
        assert(db:put("k" .. i, "v"))
      end
      assert(db:flush())
      local function events()
        if how == "poll_events" then
          for _, e in ipairs(db:poll_events() or {}) do
            log.engine_event(e.level or e[1], e.event or e[2], e.fields or e[3])
          end
        else
          uv.run("nowait")
        end
        local names = {}
        for _, l in ipairs(file_lines(logs .. "/kiwi.log")) do
          local rec = cjson.decode(l)
          if rec.logger == "engine" then
            names[rec.event] = rec
          end
        end
        return names
      end
      local names
      run_until(function()
        names = events()
        return names.flush_end ~= nil
      end, 3000)
      db:close()
      assert.is_not_nil(names.open, "no open event reached the log")
      assert.is_true(names.open.created)
      assert.is_not_nil(names.flush_start, "no flush_start event reached the log")
      local fe = names.flush_end
      assert.is_not_nil(fe, "no flush_end event reached the log")
      assert.equal("info", fe.level)
      assert.is_true(fe.entries > 0)
      assert.is_true(fe.bytes > 0)
      assert.equal("number", type(fe.ms))
    end)

    it("accept fields as a table or as the engine's JSON text", function()
      local dir = helper.tmpdir() .. "/logs"
      assert(log.configure({ dir = dir, level = "debug" }))
      log.engine_event("info", "flush_end", '{"bytes":490,"ms":0.5,"file":"000005.sst"}')
      log.engine_event("warn", "stall", { micros = 10 })
      log.engine_event("debug", "odd", "not json")
      local lines = file_lines(dir .. "/kiwi.log")
      local a, b, c = cjson.decode(lines[1]), cjson.decode(lines[2]), cjson.decode(lines[3])
      assert.equal("engine", a.logger)
      assert.equal("flush_end", a.event)
      assert.equal(490, a.bytes)
      assert.equal("000005.sst", a.file)
      assert.equal("warn", b.level)
      assert.equal(10, b.micros)
      assert.equal("not json", c.raw)
    end)
  end)
end)
