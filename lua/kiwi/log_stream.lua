--- kiwi.log_stream: the log stream over TCP on 127.0.0.1. The server side: a broadcast server
-- that writes every line to every connected client and drops a client whose unsent data exceeds
-- its limit (a slow reader never slows the engine); its bound port is written to a port file
-- (`<dir>/kiwi.port`). The client side: `kiwi logs` (`read_port`, `tail`), which finds the port,
-- connects and prints the lines. kiwi.log owns the one running server (state.server) and
-- re-exports read_port and tail.
-- @module kiwi.log_stream

local uv = require("luv")
local fmt = require("kiwi.log_format")

local format = string.format
local ipairs = ipairs
local pairs = pairs
local tostring = tostring

local M = {}

M.PORT_FILE = "kiwi.port"

local LEVELS = fmt.LEVELS

-- ---- the server ---------------------------------------------------------------------------------

local function close_handle(h)
  if not h:is_closing() then
    h:close()
  end
end

local function drop_client(srv, c)
  if not srv.closed and srv.clients[c] then
    srv.clients[c] = nil
    close_handle(c)
  end
end

--- Writes a line to every client of `srv`. The clients whose unsent data is above the limit get
-- nothing and are dropped, then `srv.on_drop(n, limit)` is called once with their number.
function M.broadcast(srv, line)
  local slow
  for c in pairs(srv.clients) do
    if uv.stream_get_write_queue_size(c) > srv.limit then
      slow = slow or {}
      slow[#slow + 1] = c
    else
      c:write(line, function(err)
        if err then
          drop_client(srv, c)
        end
      end)
    end
  end
  if slow then
    for _, c in ipairs(slow) do
      drop_client(srv, c)
    end
    -- said after the sweep, so the warning itself is not sent to the client being dropped
    srv.on_drop(#slow, srv.limit)
  end
end

local function on_connection(srv, err)
  if err or srv.closed then
    return
  end
  local c = uv.new_tcp()
  if not srv.tcp:accept(c) then
    close_handle(c)
    return
  end
  srv.clients[c] = true
  c:read_start(function(rerr, data)
    if rerr or data == nil then -- the client left; anything it sends is ignored
      drop_client(srv, c)
    end
  end)
end

--- Starts a broadcast server on 127.0.0.1:`port` (0: any free port).
-- @tparam integer port
-- @tparam integer limit bytes of unsent data above which a client is dropped
-- @tparam[opt] string port_file written with the bound port (removed by `stop`)
-- @tparam function on_drop called as on_drop(n, limit) after a broadcast dropped n clients
-- @return the server { tcp, port, clients = {tcp=true}, limit, ... }, or nil and a message
function M.listen(port, limit, port_file, on_drop)
  local tcp = uv.new_tcp()
  local srv -- set below, before the loop can call back
  local ok, err = tcp:bind("127.0.0.1", port)
  if ok then
    ok, err = tcp:listen(64, function(lerr)
      on_connection(srv, lerr)
    end)
  end
  if not ok then
    close_handle(tcp)
    return nil, format("cannot listen on 127.0.0.1:%d: %s", port, tostring(err))
  end
  local bound = tcp:getsockname().port
  srv = { tcp = tcp, port = bound, clients = {}, limit = limit, port_file = port_file,
    on_drop = on_drop, closed = false }
  if port_file then
    local f = io.open(port_file, "w")
    if f then
      f:write(bound, "\n")
      f:close()
    end
  end
  return srv
end

--- The number of clients connected to `srv`.
function M.count(srv)
  local n = 0
  for _ in pairs(srv.clients) do
    n = n + 1
  end
  return n
end

--- Closes the server and its clients (run the loop afterwards so they finish closing) and
-- removes the port file.
function M.stop(srv)
  srv.closed = true
  for c in pairs(srv.clients) do
    close_handle(c)
  end
  close_handle(srv.tcp)
  if srv.port_file then
    uv.fs_unlink(srv.port_file)
  end
end

-- ---- the client: `kiwi logs` -------------------------------------------------------------------

--- Reads the port a running kiwi advertises in <data>/logs/kiwi.port.
function M.read_port(data)
  local f = io.open(data .. "/logs/" .. M.PORT_FILE, "r")
  if not f then
    return nil
  end
  local p = math.tointeger(tonumber(f:read("l") or ""))
  f:close()
  return p
end

--- Connects to a log stream and prints it until it ends (the `kiwi logs` subcommand).
-- @tparam table opts `port` (default: read from <data>/logs/kiwi.port), `data` (default
--   "./data"), `level` (lowest level shown, default "debug"), `raw` (print the JSON lines as
--   they come), `count` (leave after this many lines), `color` (default: stdout is a terminal),
--   `out`, `err` (files)
-- @treturn integer the exit code: 0 when the stream ended or `count` lines were shown, 1 when
--   there is nothing to connect to
function M.tail(opts)
  local out, errf = opts.out or io.stdout, opts.err or io.stderr
  local data = opts.data or "./data"
  local port = opts.port or M.read_port(data)
  if not port then
    errf:write(format("kiwi logs: no log port given and %s/logs/%s does not exist (is kiwi running"
      .. " on %s with log_port >= 0?)\n", data, M.PORT_FILE, data))
    return 1
  end
  local min = LEVELS[opts.level or "debug"] or LEVELS.debug
  local color = opts.color
  if color == nil then
    color = uv.guess_handle(1) == "tty"
  end
  local tcp, sig = uv.new_tcp(), uv.new_signal()
  local code, shown, buf = 0, 0, ""
  local function stop()
    if not tcp:is_closing() then
      tcp:close()
    end
    if not sig:is_closing() then
      sig:close()
    end
  end
  local function on_line(line)
    if opts.raw then
      local lv = line:match('"level":"(%a+)"')
      if (LEVELS[lv] or LEVELS.info) < min then
        return
      end
      out:write(line, "\n")
    else
      local text, lv = fmt.pretty(line, color)
      if lv and (LEVELS[lv] or LEVELS.info) < min then
        return
      end
      out:write(text, "\n")
    end
    out:flush()
    shown = shown + 1
    if opts.count and shown >= opts.count then
      stop()
    end
  end
  sig:start("sigint", stop)
  tcp:connect("127.0.0.1", port, function(err)
    if err then
      errf:write(format("kiwi logs: cannot connect to 127.0.0.1:%d: %s\n", port, tostring(err)))
      code = 1
      stop()
      return
    end
    tcp:read_start(function(rerr, chunk)
      if rerr or chunk == nil then
        errf:write(format("kiwi logs: the stream from 127.0.0.1:%d ended%s\n", port,
          rerr and (" (" .. tostring(rerr) .. ")") or ""))
        stop()
        return
      end
      buf = buf .. chunk
      while true do
        local nl = buf:find("\n", 1, true)
        if not nl or tcp:is_closing() then
          break
        end
        local line = buf:sub(1, nl - 1)
        buf = buf:sub(nl + 1)
        on_line(line)
      end
    end)
  end)
  uv.run("default")
  return code
end

return M
