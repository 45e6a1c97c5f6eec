-- spec/kiwi_repl_spec.lua: the first REPL (lua/kiwi/repl.lua) and the `kiwi` command
-- (scripts/kiwi): word splitting, each command against a real db, and whole sessions piped
-- through the command as a user would type them.
local kiwi = require("kiwi")
local repl = require("kiwi.repl")
local helper = require("spec.helper")

local q = helper.shell_quote

-- Runs scripts/kiwi with args and the given stdin; returns stdout, stderr, exit code.
local function kiwi_cmd(dir, args, input)
  local inpath, errpath = dir .. "/stdin.txt", dir .. "/stderr.txt"
  local f = assert(io.open(inpath, "w"))
  f:write(input or "")
  f:close()
  local cmd = string.format("LUA_PATH=%s LUA_CPATH=%s %s scripts/kiwi %s < %s 2> %s",
    q(helper.lua_path), q(helper.lua_cpath), helper.lua_bin, args, q(inpath), q(errpath))
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, helper.read_file(errpath), code
end

describe("kiwi repl", function()
  describe("split", function()
    it("splits on whitespace and honours double quotes", function()
      assert.same({ "put", "k", "v" }, repl.split("put k v"))
      assert.same({ "put", "k", "v" }, repl.split("  put\tk   v  "))
      assert.same({ "put", "user 1", "Alice Smith" }, repl.split('put "user 1" "Alice Smith"'))
      assert.same({ "get", "" }, repl.split('get ""'))
      assert.same({ "put", 'a"b', "x\ny", "\0\255" }, repl.split('put "a\\"b" "x\\ny" "\\x00\\xff"'))
      assert.same({ "ab c" }, repl.split('a"b c"'))
      assert.same({}, repl.split("   "))
      local words, err = repl.split('put "open')
      assert.is_nil(words)
      assert.equal("unterminated quote", err)
    end)

    it("shows binary bytes escaped", function()
      assert.equal("a\\x00b\\xff\\\\", repl.show("a\0b\255\\"))
    end)
  end)

  describe("execute", function()
    it("runs each command against the db", function()
      local db = assert(kiwi.open(helper.tmpdir(), { mode = "dev" }))
      assert.equal("OK", (repl.execute(db, "put a 1")))
      assert.equal("OK", (repl.execute(db, 'put "b key" "two words"')))
      assert.equal("1", (repl.execute(db, "get a")))
      assert.equal("two words", (repl.execute(db, 'get "b key"')))
      assert.equal("(nil)", (repl.execute(db, "get zzz")))
      assert.equal("a = 1\nb key = two words\n(2 entries)", (repl.execute(db, "scan")))
      assert.equal("b key = two words\n(1 entry)", (repl.execute(db, 'scan b')))
      assert.equal("a = 1\n(1 entry)", (repl.execute(db, 'scan "" b')))
      assert.equal("a = 1\n(more; showing the first 1)", (repl.execute(db, 'scan "" "" 1')))
      assert.equal("OK", (repl.execute(db, "del a")))
      assert.equal("(nil)", (repl.execute(db, "get a")))
      assert.equal("OK", (repl.execute(db, "flush")))
      assert.equal("two words", (repl.execute(db, 'get "b key"')))
      assert.matches("commands:", (repl.execute(db, "help")))
      local out, continue = repl.execute(db, "")
      assert.is_nil(out)
      assert.is_true(continue)
      out, continue = repl.execute(db, "exit")
      assert.is_nil(out)
      assert.is_false(continue)
      db:close()
    end)

    it("prints errors and goes on", function()
      local db = assert(kiwi.open(helper.tmpdir(), { mode = "dev" }))
      local out, continue = repl.execute(db, "frobnicate x")
      assert.equal("error: unknown command 'frobnicate' (try help)", out)
      assert.is_true(continue)
      assert.equal("error: usage: put <key> <value>", (repl.execute(db, "put onlykey")))
      assert.equal("error: unterminated quote", (repl.execute(db, 'get "x')))
      assert.equal("error: limit must be a non-negative integer", (repl.execute(db, "scan a b x")))
      db:close()
    end)
  end)

  describe("the kiwi command", function()
    it("runs a piped session and closes the db at EOF", function()
      local dir = helper.tmpdir()
      local data = dir .. "/data"
      local out, err, code = kiwi_cmd(dir, "repl --data " .. q(data),
        'put user:1 "Alice Smith"\nget user:1\nbogus\nscan\nstats\n')
      assert.equal(0, code, err)
      assert.matches("^OK\nAlice Smith\nerror: unknown command 'bogus' %(try help%)\n"
        .. "user:1 = Alice Smith\n%(1 entry%)\n", out)
      -- EOF closed the db: it opens again and kept the data
      local db = assert(kiwi.open(data, { mode = "dev" }))
      assert.equal("Alice Smith", db:get("user:1"))
      db:close()
      out, err, code = kiwi_cmd(dir, "repl --data=" .. q(data) .. " --mode dev",
        "get user:1\nexit\nget user:1\n")
      assert.equal(0, code, err)
      assert.equal("Alice Smith\n", out)
    end)

    it("prints help and version", function()
      local dir = helper.tmpdir()
      local out, _, code = kiwi_cmd(dir, "--help")
      assert.equal(0, code)
      assert.matches("usage: kiwi", out)
      out, _, code = kiwi_cmd(dir, "version")
      assert.equal(0, code)
      assert.equal("kiwi " .. kiwi.version .. "\n", out)
    end)

    it("exits 2 with usage on stderr for an unknown command or flag", function()
      local dir = helper.tmpdir()
      for _, args in ipairs({ "frob", "--frob", "repl --frob x", "repl --mode turbo", "" }) do
        local out, err, code = kiwi_cmd(dir, args)
        assert.equal(2, code, args)
        assert.equal("", out)
        assert.matches("usage: kiwi", err)
      end
    end)

    it("reports a db that cannot be opened", function()
      local dir = helper.tmpdir()
      local db = assert(kiwi.open(dir .. "/data", { mode = "dev" }))
      local _, err, code = kiwi_cmd(dir, "repl --data " .. q(dir .. "/data"), "")
      assert.equal(1, code)
      assert.matches("busy", err)
      db:close()
    end)
  end)
end)
