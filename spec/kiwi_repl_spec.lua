-- spec/kiwi_repl_spec.lua: the REPL (lua/kiwi/repl.lua): the lpeg word grammar, aligned tables,
-- every command through transcripts (spec/repl/*.q), piped sessions through `kiwi repl`, and
-- interactive sessions on a terminal driven through tmux (line editing, history, completion,
-- Ctrl-C, Ctrl-D) with `kiwi logs` following the same session in a second window.
--
-- Transcript format (spec/repl/*.q), after luarocks' spec/quick: `# comment`; `> line` is typed;
-- the lines after it are the expected output, each exact, or `~pattern` (a Lua pattern), or
-- `...` (any number of lines). Each file runs on a fresh dev-mode db with a kiwi.config.
local config = require("kiwi.config")
local helper = require("spec.helper")
local kiwi = require("kiwi")
local repl = require("kiwi.repl")
local uv = require("luv")

local q = helper.shell_quote

-- Runs scripts/kiwi with args and stdin; returns stdout, stderr, exit code.
local function kiwi_cmd(dir, args, input, envs)
  local inpath, errpath = dir .. "/stdin.txt", dir .. "/stderr.txt"
  local f = assert(io.open(inpath, "w"))
  f:write(input or "")
  f:close()
  local cmd = string.format("%s LUA_PATH=%s LUA_CPATH=%s %s scripts/kiwi %s < %s 2> %s", envs or "",
    q(helper.lua_path), q(helper.lua_cpath), helper.lua_shell, args, q(inpath), q(errpath))
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, helper.read_file(errpath), code
end

-- ---- transcripts --------------------------------------------------------------------------------

local function parse_transcript(text)
  local steps, cur = {}, nil
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if line:sub(1, 1) == "#" then -- luacheck: ignore 542
    elseif line:sub(1, 1) == ">" then
      cur = { input = line:gsub("^> ?", ""), expect = {} }
      steps[#steps + 1] = cur
    elseif cur and not (line == "" and #cur.expect == 0) then
      cur.expect[#cur.expect + 1] = line
    end
  end
  for _, s in ipairs(steps) do -- trailing blank lines of a step are layout, not output
    while s.expect[#s.expect] == "" do
      s.expect[#s.expect] = nil
    end
  end
  return steps
end

local function line_matches(want, got)
  if want:sub(1, 1) == "~" then
    return got ~= nil and got:find(want:sub(2)) ~= nil
  end
  return want == got
end

-- Matches output lines against expected lines with `...` wildcards; returns true or a reason.
local function match_lines(expect, got, i, j)
  i, j = i or 1, j or 1
  if i > #expect then
    return j > #got or string.format("unexpected output line %d: %q", j, got[j])
  end
  if expect[i] == "..." then
    for k = j, #got + 1 do
      if match_lines(expect, got, i + 1, k) == true then
        return true
      end
    end
    return string.format("nothing after '...' matches %q", tostring(expect[i + 1]))
  end
  if not line_matches(expect[i], got[j]) then
    return string.format("line %d: expected %q, got %q", j, expect[i], tostring(got[j]))
  end
  return match_lines(expect, got, i + 1, j + 1)
end

local function split_lines(text)
  local out = {}
  if text == nil then
    return out
  end
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do
    out[#out + 1] = l
  end
  return out
end

local function run_transcript(path)
  local dir = helper.tmpdir() .. "/data"
  local cfg = assert(config.load({ data = dir, getenv = function() return nil end }))
  local db = assert(cfg:open())
  local session = repl.session(db, { cfg = cfg, apply_lua = repl.apply_setting })
  local ok, err = pcall(function()
    for n, step in ipairs(parse_transcript(helper.read_file(path))) do
      local out, continue = repl.execute(session, step.input)
      local res = match_lines(step.expect, split_lines(out))
      if res ~= true then
        error(string.format("%s, step %d (> %s): %s\n--- output:\n%s", path, n, step.input, res,
          tostring(out)), 0)
      end
      if not continue then
        break
      end
    end
  end)
  db:close()
  require("kiwi.log").update({ level = "info" }) -- config.q changed it
  assert(ok, err)
end

-- ---- tmux ---------------------------------------------------------------------------------------

local function have_tmux()
  return os.execute("command -v tmux >/dev/null 2>&1") == true
end

-- A tmux server of our own (a private socket), for one test.
local function tmux_server(dir)
  local t = { sock = dir .. "/tmux.sock" }
  function t.run(args)
    local p = assert(io.popen("tmux -S " .. q(t.sock) .. " " .. args .. " 2>&1"))
    local out = p:read("a")
    p:close()
    return out
  end
  function t.keys(target, ...)
    local parts = {}
    for _, k in ipairs({ ... }) do
      parts[#parts + 1] = q(k)
    end
    t.run("send-keys -t " .. target .. " " .. table.concat(parts, " "))
  end
  function t.screen(target)
    return (t.run("capture-pane -p -S -200 -t " .. target):gsub("%s+$", ""))
  end
  -- Waits until the pane shows text matching pattern; returns the screen.
  function t.wait(target, pattern, ms)
    local deadline = uv.now() + (ms or 5000)
    local s
    repeat
      s = t.screen(target)
      if s:find(pattern) then
        return s
      end
      uv.sleep(30)
      uv.update_time()
    until uv.now() > deadline
    error(string.format("timed out waiting for %q in pane %s:\n%s", pattern, target, s), 2)
  end
  function t.kill()
    t.run("kill-server")
  end
  return t
end

local function child_env_prefix()
  return string.format("env LUA_PATH=%s LUA_CPATH=%s TERM=xterm HOME=%s", q(helper.lua_path),
    q(helper.lua_cpath), q(os.getenv("HOME") or "/tmp"))
end

-- ---- specs --------------------------------------------------------------------------------------

describe("kiwi repl", function()
  describe("split (the lpeg grammar)", function()
    it("splits on whitespace and honours quotes and escapes", function()
      assert.same({ "put", "k", "v" }, repl.split("put k v"))
      assert.same({ "put", "k", "v" }, repl.split("  put\tk   v  "))
      assert.same({ "put", "user 1", "Alice Smith" }, repl.split('put "user 1" "Alice Smith"'))
      assert.same({ "get", "" }, repl.split('get ""'))
      assert.same({ "get", "" }, repl.split("get ''"))
      assert.same({ "put", 'a"b', "x\ny", "\0\255" }, repl.split('put "a\\"b" "x\\ny" "\\x00\\xff"'))
      assert.same({ "ab c" }, repl.split('a"b c"'))
      assert.same({ "a b", "c" }, repl.split("a\\ b c"))
      assert.same({ [[it's \n raw]] }, repl.split([["it's"' \n raw']]))
      assert.same({ "\t\r\27'\\" }, repl.split([["\t\r\e\'\\"]]))
      assert.same({}, repl.split("   "))
      assert.same({}, repl.split(""))
    end)

    it("reports a bad line with the column", function()
      local cases = {
        { 'put "open', "unterminated quote opened at column 5" },
        { "put 'open", "unterminated quote opened at column 5" },
        { "a\\q", "unknown escape \\q at column 2" },
        { '"\\x4"', "\\x needs two hex digits at column 2" },
        { "abc\\", "backslash at the end of the line at column 4" },
      }
      for _, c in ipairs(cases) do
        local words, err = repl.split(c[1])
        assert.is_nil(words, c[1])
        assert.equal(c[2], err)
      end
    end)
  end)

  describe("output", function()
    it("aligns tables: text left, numbers right", function()
      assert.equal("id  name      n\n 1  a       100\n12  longer    3",
        repl.table({ "id", "name", "n" }, { { 1, "a", 100 }, { 12, "longer", 3 } }))
      assert.equal("key  value", repl.table({ "key", "value" }, {}))
      local long = string.rep("x", 100)
      local t = repl.table({ "k" }, { { long } })
      assert.equal(repl.CELL_WIDTH, #t:match("\n(.*)$"))
    end)

    it("shows binary bytes escaped", function()
      assert.equal("a\\x00b\\xff\\\\", repl.show("a\0b\255\\"))
      assert.equal('"a\\"b\\\\\\n\\x00"', repl.inspect('a"b\\\n\0'))
      assert.equal('{ 1, 2, k = "v" }', repl.inspect({ 1, 2, k = "v" }))
    end)
  end)

  describe("the line editor (kiwi.lineedit, fed bytes as a terminal sends them)", function()
    local lineedit = require("kiwi.lineedit")

    local function editor(history)
      local e = { lines = {}, out = {} }
      e.ed = lineedit.new({
        write = function(s) e.out[#e.out + 1] = s end,
        on_line = function(line)
          e.lines[#e.lines + 1] = line == nil and "<EOF>" or line
          if line ~= nil then
            e.ed:start("> ")
          end
        end,
        complete = repl.complete,
        history = history,
        width = 40,
      })
      e.ed:start("> ")
      return e
    end

    it("inserts, moves, deletes and kills", function()
      local e = editor()
      e.ed:feed("put a 1\r")
      e.ed:feed("et x\1g\r") -- C-a, insert at the start
      e.ed:feed("abc\27[D\27[DX\5Y\r") -- Left Left, insert, C-e, insert
      e.ed:feed("abcdef\2\2\11\r") -- C-b C-b, C-k kills to the end
      e.ed:feed("abcdef\2\2\21\r") -- C-u kills to the start
      e.ed:feed("one two three\23\23\r") -- C-w twice
      e.ed:feed("abc\127\127d\r") -- Backspace twice
      e.ed:feed("abc\1\27[3~\4\r") -- Home, Delete, C-d deletes too
      e.ed:feed("w1 w2 w3\27b\27bX\r") -- Alt-b twice
      e.ed:feed("h\195\169llo\127\127\127X\r") -- UTF-8: Backspace removes whole code points
      assert.same({ "put a 1", "get x", "aXbcY", "abcd", "ef", "one ", "ad", "c", "w1 Xw2 w3", "h\195\169X" },
        e.lines)
    end)

    it("walks the history and keeps the line being typed", function()
      local e = editor({ "first", "second" })
      e.ed:feed("third\r")
      e.ed:feed("draft\27[A")
      assert.equal("third", e.ed.buf)
      e.ed:feed("\27[A\27[A\27[A")
      assert.equal("first", e.ed.buf)
      e.ed:feed("\27[B\27[B\27[B")
      assert.equal("draft", e.ed.buf)
      e.ed:feed("\16\r") -- C-p, Enter
      assert.same({ "third", "third" }, e.lines)
      assert.same({ "first", "second", "third" }, e.ed.history) -- no duplicate in a row
    end)

    it("completes command and setting names", function()
      local e = editor()
      e.ed:feed("sc\t")
      assert.equal("scan ", e.ed.buf)
      e.ed:feed("\21co\t") -- compact and config: nothing in common beyond "co"
      assert.equal("co", e.ed.buf)
      e.ed:feed("\t") -- the second Tab lists them
      assert.truthy(table.concat(e.out):find("compact  config", 1, true))
      e.ed:feed("nfig set max_memtable_e\t")
      assert.equal("config set max_memtable_entries ", e.ed.buf)
      e.ed:feed("\21get k\t") -- arguments are not completed
      assert.equal("get k", e.ed.buf)
    end)

    it("cancels with Ctrl-C, ends with Ctrl-D on an empty line, and waits for split escapes", function()
      local e = editor()
      e.ed:feed("never\3")
      assert.equal("", e.ed.buf)
      assert.truthy(table.concat(e.out):find("never\27[K^C\r\n\r> \27[K", 1, true))
      e.ed:feed("ab\27")
      e.ed:feed("[D") -- an escape sequence split across reads
      e.ed:feed("X\r\4")
      assert.same({ "aXb", "<EOF>" }, e.lines)
    end)

    it("scrolls a line longer than the terminal", function()
      local e = editor()
      e.ed:feed(string.rep("x", 100))
      local last = e.out[#e.out]
      assert.truthy(last:find("^\r> <x+\27%[K$"), last)
      assert.is_true(#last < 45)
      e.ed:feed("\r")
      assert.equal(string.rep("x", 100), e.lines[1])
    end)
  end)

  describe("transcripts", function()
    local dir = "spec/repl"
    for _, name in ipairs(helper.files(dir, ".q")) do
      it(name, function()
        run_transcript(dir .. "/" .. name)
      end)
    end
  end)

  describe("transcripts through the stdin of kiwi repl", function()
    local dir = "spec/repl"
    for _, name in ipairs(helper.files(dir, ".q")) do
      it(name, function()
        local input, expect = {}, {}
        for _, step in ipairs(parse_transcript(helper.read_file(dir .. "/" .. name))) do
          input[#input + 1] = step.input
          for _, l in ipairs(step.expect) do
            expect[#expect + 1] = l
          end
          if step.input:match("^%s*exit%s*$") then
            break
          end
        end
        local tmp = helper.tmpdir()
        local out, err, code = kiwi_cmd(tmp, "repl --data " .. q(tmp .. "/data"),
          table.concat(input, "\n") .. "\n")
        assert.equal(0, code, err)
        local lines = split_lines(out)
        if lines[#lines] == "" then
          lines[#lines] = nil
        end
        local res = match_lines(expect, lines)
        assert(res == true, tostring(res) .. "\n--- output:\n" .. out)
      end)
    end
  end)

  describe("the kiwi repl command with piped input", function()
    it("runs a session, logs it, and closes the db at EOF", function()
      local dir = helper.tmpdir()
      local data = dir .. "/data"
      local out, err, code = kiwi_cmd(dir, "repl --data " .. q(data),
        'put user:1 "Alice Smith"\nget user:1\nbogus\nscan\nconfig set max_memtable_entries 25\n')
      assert.equal(0, code, err)
      assert.equal("OK\nAlice Smith\nerror: unknown command 'bogus' (try help)\n"
        .. "key     value\nuser:1  Alice Smith\n(1 entry)\n"
        .. "OK: max_memtable_entries = 25 (saved to " .. data .. "/config.json)\n", out)
      -- a new data directory keeps the mode it was created with
      assert.equal('{\n  "max_memtable_entries": 25,\n  "mode": "dev"\n}\n',
        helper.read_file(data .. "/config.json"))
      -- EOF closed the db: it opens again, kept the data and the setting
      local cfg = assert(config.load({ data = data }))
      local db = assert(cfg:open())
      assert.equal("Alice Smith", db:get("user:1"))
      assert.equal(25, db:config().max_memtable_entries)
      db:close()
      -- the session's log: JSON lines with open, commands, config_set, close
      local events = {}
      for l in io.lines(data .. "/logs/kiwi.log") do
        events[#events + 1] = require("cjson").decode(l).event
      end
      assert.equal("open", events[1])
      assert.equal("close", events[#events])
      assert.truthy(table.concat(events, " "):find("config_set", 1, true))
      -- no port file is left once the session ended
      assert.is_nil(io.open(data .. "/logs/kiwi.port"))
      out, err, code = kiwi_cmd(dir, "repl --data=" .. q(data) .. " --mode dev",
        "get user:1\nexit\nget user:1\n")
      assert.equal(0, code, err)
      assert.equal("Alice Smith\n", out)
      -- a prod directory stays prod without --mode; --mode overrides it for one run
      local pdata = dir .. "/prod"
      out, err, code = kiwi_cmd(dir, "repl --mode prod --data " .. q(pdata), "put a 1\n")
      assert.equal(0, code, err)
      assert.equal("OK\n", out)
      out = kiwi_cmd(dir, "repl --data " .. q(pdata), "lua db:config().mode\n")
      assert.equal('"prod"\n', out)
      out = kiwi_cmd(dir, "repl --mode dev --data " .. q(pdata), "lua db:config().mode\n")
      assert.equal('"dev"\n', out)
    end)

    it("refuses a bad config.json before opening, naming file, key and reason", function()
      local dir = helper.tmpdir()
      local data = dir .. "/data"
      assert(uv.fs_mkdir(data, tonumber("755", 8)))
      local f = assert(io.open(data .. "/config.json", "w"))
      f:write('{"max_memtable_entries": "lots"}')
      f:close()
      local out, err, code = kiwi_cmd(dir, "repl --data " .. q(data), "put a 1\n")
      assert.equal(1, code)
      assert.equal("", out)
      assert.equal("kiwi repl: invalid argument: " .. data .. "/config.json: key 'max_memtable_entries':"
        .. " expected an integer, got string \"lots\"\n", err)
      assert.same({ "config.json" }, helper.files(data))
      -- an engine range error: still refused before the engine starts
      f = assert(io.open(data .. "/config.json", "w"))
      f:write('{"bloom_fpr_dev": 0.9}')
      f:close()
      out, err, code = kiwi_cmd(dir, "repl --data " .. q(data), "put a 1\n")
      assert.equal("", out)
      assert.equal(1, code)
      assert.matches("config.json: key 'bloom_fpr_dev': 0.9 is out of range", err)
      assert.is_nil(io.open(data .. "/CURRENT"))
      -- and an environment override names the variable
      out, err, code = kiwi_cmd(dir, "repl --data " .. q(data) .. " --config /dev/null", "",
        "KIWI_MAX_LEVELS=0")
      assert.equal(1, code, out)
      assert.matches("environment variable KIWI_MAX_LEVELS: key 'max_levels': 0 is out of range", err)
    end)

    it("reports a db that cannot be opened", function()
      local dir = helper.tmpdir()
      local db = assert(kiwi.open(dir .. "/data", { mode = "dev" }))
      local _, err, code = kiwi_cmd(dir, "repl --data " .. q(dir .. "/data"), "")
      assert.equal(1, code)
      assert.matches("^kiwi repl: busy", err)
      db:close()
    end)
  end)

  describe("on a terminal (tmux)", function()
    it("edits lines, completes, keeps history across runs, cancels with Ctrl-C, leaves with Ctrl-D",
      function()
      if not have_tmux() then
        pending("tmux is not installed (scripts/bootstrap installs it)")
        return
      end
      local dir = helper.tmpdir()
      local data = dir .. "/data"
      local t = tmux_server(dir)
      local start = child_env_prefix() .. " " .. helper.lua_shell .. " scripts/kiwi repl --data " .. q(data)
        .. "; echo EXIT=$?; sleep 60"
      local ok, err = pcall(function()
        t.run("new-session -d -x 150 -y 50 -s kiwi " .. q(start))
        t.wait("kiwi", "kiwi>$")
        -- a second window follows the log stream of this session
        t.wait("kiwi", "kiwi>$")
        assert.is_truthy(helper.read_file(data .. "/logs/kiwi.port"):match("^%d+\n$"))
        t.run("new-window -d -t kiwi -n logs " .. q(child_env_prefix() .. " " .. helper.lua_shell
          .. " scripts/kiwi logs --data " .. q(data) .. " --level info; sleep 60"))
        t.keys("kiwi:0", 'put "user 1" "Alice Smith"', "Enter")
        t.wait("kiwi:0", "OK\nkiwi>$")
        -- tab completion of a command name, then of a setting name
        t.keys("kiwi:0", "sc", "Tab")
        t.wait("kiwi:0", "kiwi> scan$")
        t.keys("kiwi:0", "Enter")
        t.wait("kiwi:0", "user 1  Alice Smith\n%(1 entry%)\nkiwi>$")
        t.keys("kiwi:0", "config set max_memtable_en", "Tab")
        t.wait("kiwi:0", "kiwi> config set max_memtable_entries$")
        t.keys("kiwi:0", "30", "Enter")
        t.wait("kiwi:0", "OK: max_memtable_entries = 30")
        -- Ctrl-C drops the line being typed
        t.keys("kiwi:0", "put never written")
        t.wait("kiwi:0", "kiwi> put never written$")
        t.keys("kiwi:0", "C-c")
        t.wait("kiwi:0", "put never written%^C\nkiwi>$")
        -- line editing: Home, then insert the missing first letter; Up recalls the last line
        t.keys("kiwi:0", "et 'user 1'", "Home", "g", "Enter")
        t.wait("kiwi:0", "kiwi> get 'user 1'\nAlice Smith\nkiwi>$")
        t.keys("kiwi:0", "Up")
        t.wait("kiwi:0", "kiwi> get 'user 1'$")
        t.keys("kiwi:0", "C-a", "C-k", "del nothing", "Enter")
        t.wait("kiwi:0", "del nothing\nOK\nkiwi>$")
        t.keys("kiwi:0", "bogus", "Enter")
        t.wait("kiwi:0", "error: unknown command 'bogus' %(try help%)\nkiwi>$")
        -- the log window saw the session's events, and the engine's when the binding bridges them
        t.wait("kiwi:1", "INFO  repl config_set setting=max_memtable_entries value=30")
        local first = require("cjson").decode(io.lines(data .. "/logs/kiwi.log")())
        if first.events ~= "none" then
          t.keys("kiwi:0", "flush", "Enter")
          t.wait("kiwi:1", "INFO  engine flush_end bytes=%d+ entries=%d+ file=%d+ ms=")
        end
        -- Ctrl-D closes the db and leaves
        t.keys("kiwi:0", "C-d")
        t.wait("kiwi:0", "EXIT=0")
        -- the log client saw the close, then the stream ended
        t.wait("kiwi:1", "INFO  repl close")
        local hist = helper.read_file(data .. "/.kiwi_history")
        assert.truthy(hist:find('put "user 1" "Alice Smith"\n', 1, true), hist)
        assert.truthy(hist:find("config set max_memtable_entries 30\n", 1, true), hist)
        assert.falsy(hist:find("never written", 1, true), hist)
        -- the db was closed cleanly: it opens, with the data and the setting
        local cfg = assert(config.load({ data = data }))
        local db = assert(cfg:open())
        assert.equal("Alice Smith", db:get("user 1"))
        assert.equal(30, db:config().max_memtable_entries)
        db:close()
        -- a second run finds the history of the first (Up recalls the last line)
        t.run("kill-window -t kiwi:1")
        t.run("respawn-window -k -t kiwi:0 " .. q(start))
        t.wait("kiwi:0", "kiwi>$")
        t.keys("kiwi:0", "Up")
        local last = hist:match("([^\n]*)\n$")
        t.wait("kiwi:0", "kiwi> " .. last:gsub("%p", "%%%0") .. "$")
        t.keys("kiwi:0", "C-u", "exit", "Enter")
        t.wait("kiwi:0", "EXIT=0")
      end)
      t.kill()
      assert(ok, err)
    end)
  end)
end)
