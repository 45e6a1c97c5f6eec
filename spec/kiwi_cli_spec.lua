-- spec/kiwi_cli_spec.lua: the `kiwi` command (scripts/kiwi, lua/kiwi/cli.lua): subcommands and
-- their --help, usage errors (exit 2), subcommands that are not available, and `kiwi check`
-- (lua/kiwi/check.lua) finding damaged SSTable blocks, WAL records and other files.
local check = require("kiwi.check")
local cli = require("kiwi.cli")
local helper = require("spec.helper")
local kiwi = require("kiwi")

local q = helper.shell_quote

-- Runs scripts/kiwi with args; returns stdout, stderr, exit code.
local function kiwi_cmd(args)
  local dir = helper.tmpdir()
  local errpath = dir .. "/stderr.txt"
  local cmd = string.format("LUA_PATH=%s LUA_CPATH=%s %s scripts/kiwi %s < /dev/null 2> %s",
    q(helper.lua_path), q(helper.lua_cpath), helper.lua_shell, args, q(errpath))
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, helper.read_file(errpath), code
end

-- A file-like sink for cli.main's out/err.
local function sink()
  local s = { text = "" }
  function s.write(self, ...)
    for _, x in ipairs({ ... }) do
      self.text = self.text .. tostring(x)
    end
    return self
  end
  function s.flush() end
  return s
end

local function read(path)
  return helper.read_file(path)
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- Flips one byte of a file (xor 0xff) at a 0-based offset.
local function flip(path, offset)
  local data = read(path)
  write(path, data:sub(1, offset) .. string.char(data:byte(offset + 1) ~ 0xff) .. data:sub(offset + 2))
end

local bench_available = pcall(require, "kiwi.bench")

describe("kiwi command", function()
  describe("usage", function()
    it("lists only the subcommands that work", function()
      local out, err, code = kiwi_cmd("--help")
      assert.equal(0, code, err)
      assert.matches("^usage: kiwi <command>", out)
      for _, name in ipairs({ "repl", "logs", "check DIR", "version" }) do
        assert.truthy(out:find("\n  " .. name .. " ", 1, true), name)
      end
      assert.equal(bench_available, out:find("\n  bench ", 1, true) ~= nil)
      assert.falsy(out:find("\n  api", 1, true))
      assert.falsy(out:find("\n  web", 1, true))
      local out2 = kiwi_cmd("help")
      assert.equal(out, out2)
    end)

    it("describes each subcommand with --help", function()
      for _, name in ipairs({ "repl", "logs", "check", "version" }) do
        local out, err, code = kiwi_cmd(name .. " --help")
        assert.equal(0, code, err)
        assert.matches("^usage: kiwi " .. name, out)
        local out2 = kiwi_cmd("help " .. name)
        assert.equal(out, out2)
      end
      local out = kiwi_cmd("repl -h")
      assert.matches("%-%-data DIR", out)
      assert.matches("%-%-mode dev|prod", out)
      assert.matches("%-%-config FILE", out)
      out = kiwi_cmd("logs --help")
      assert.matches("%-%-port N", out)
      assert.matches("%-%-level L", out)
    end)

    it("prints the version", function()
      local out, _, code = kiwi_cmd("version")
      assert.equal(0, code)
      assert.equal("kiwi " .. kiwi.version .. "\n", out)
      assert.equal(out, (kiwi_cmd("--version")))
    end)

    it("exits 2 with usage on stderr for unknown commands and flags, missing or bad arguments", function()
      local cases = {
        { "", "kiwi: missing command", "usage: kiwi <command>" },
        { "frob", "kiwi: unknown command 'frob'", "usage: kiwi <command>" },
        { "--frob", "kiwi: unknown flag '--frob'", "usage: kiwi <command>" },
        { "help frob", "kiwi: unknown command 'frob'", "usage: kiwi <command>" },
        { "repl --frob x", "kiwi repl: unknown flag '--frob'", "usage: kiwi repl" },
        { "repl -x", "kiwi repl: unknown flag '-x'", "usage: kiwi repl" },
        { "repl --mode turbo", "kiwi repl: flag '--mode': must be dev or prod, not 'turbo'",
          "usage: kiwi repl" },
        { "repl --data", "kiwi repl: flag '--data' needs a value (DIR)", "usage: kiwi repl" },
        { "repl extra", "kiwi repl: unexpected argument 'extra'", "usage: kiwi repl" },
        { "check", "kiwi check: missing argument DIR", "usage: kiwi check DIR" },
        { "check a b", "kiwi check: unexpected argument 'b'", "usage: kiwi check DIR" },
        { "logs --port x", "kiwi logs: flag '--port' takes an integer, not 'x'", "usage: kiwi logs" },
        { "logs --port 0", "kiwi logs: flag '--port': must be 1..65535, not '0'", "usage: kiwi logs" },
        { "logs --level loud", "kiwi logs: flag '--level': must be debug, info, warn or error",
          "usage: kiwi logs" },
        { "logs --raw=yes", "kiwi logs: flag '--raw' takes no value", "usage: kiwi logs" },
        { "version now", "kiwi version: unexpected argument 'now'", "usage: kiwi version" },
      }
      for _, c in ipairs(cases) do
        local out, err, code = kiwi_cmd(c[1])
        assert.equal(2, code, c[1])
        assert.equal("", out, c[1])
        assert.truthy(err:find(c[2], 1, true), c[1] .. ": " .. err)
        assert.truthy(err:find(c[3], 1, true), c[1] .. ": " .. err)
      end
    end)

    it("runs bench through kiwi.bench, or says it is unavailable", function()
      if bench_available then
        local out, _, code = kiwi_cmd("bench --help")
        assert.equal(0, code)
        assert.matches("^usage: kiwi bench", out)
        assert.truthy(out:find("--set LIST", 1, true))
        for _, c in ipairs({
          { "bench --set nonsense",
            [[kiwi bench: flag '--set': expected name=value, got "nonsense", not 'nonsense']] },
          { "bench --set block_size=abc", "kiwi bench: flag '--set': block_size: expected a "
            .. [[whole number, got "abc", not 'block_size=abc']] },
        }) do
          local o, err, rc = kiwi_cmd(c[1])
          assert.equal(2, rc, c[1]) -- a usage error: nothing ran
          assert.equal("", o, c[1])
          assert.equal(c[2] .. "\nusage: kiwi bench ", err:sub(1, #c[2] + 19), c[1])
        end
      else
        local out, err, code = kiwi_cmd("bench")
        assert.equal(1, code)
        assert.equal("", out)
        assert.matches("^kiwi bench: unavailable in this installation %(kiwi.bench", err)
      end
    end)

    it("plugs a subcommand in as one registry entry, hidden while unavailable", function()
      local ran
      cli.register({ name = "zz-test", summary = "a test entry", args = { "X" },
        flags = { n = { arg = "N", int = true, doc = "a number" }, v = { doc = "a switch" } },
        available = function() return ran ~= "off", "switched off" end,
        run = function(opts)
          ran = opts
          return 3
        end })
      local ok, err = pcall(function()
        local out, errs = sink(), sink()
        assert.equal(3, cli.main({ "zz-test", "--n", "5", "--v", "hello" }, { out = out, err = errs }))
        assert.equal(5, ran.n)
        assert.equal(true, ran.v)
        assert.equal("hello", ran.x)
        assert.truthy(cli.usage():find("zz-test X", 1, true))
        ran = "off"
        assert.falsy(cli.usage():find("zz-test", 1, true))
        out, errs = sink(), sink()
        assert.equal(1, cli.main({ "zz-test", "y" }, { out = out, err = errs }))
        assert.equal("kiwi zz-test: unavailable in this installation (switched off)\n", errs.text)
      end)
      cli.commands["zz-test"] = nil
      table.remove(cli.order)
      assert(ok, err)
    end)
  end)
end)

describe("kiwi check", function()
  it("computes CRC-32C", function()
    assert.equal(0xE3069283, check.crc32c("123456789"))
    assert.equal(0x8A9136AA, check.crc32c(string.rep("\0", 32)))
    assert.equal(0x62A8AB43, check.crc32c(string.rep("\255", 32)))
    assert.equal(0, check.crc32c(""))
    local a, b = "hello, ", "world and more bytes"
    assert.equal(check.crc32c(a .. b), check.crc32c(b, 1, #b, check.crc32c(a)))
    assert.equal(check.crc32c("bcd"), check.crc32c("abcde", 2, 4))
  end)

  -- A data directory with a few SSTables of many small blocks, and a WAL with records.
  local function make_db()
    local dir = helper.tmpdir() .. "/data"
    local db = assert(kiwi.open(dir, { mode = "dev", block_size = 256, max_memtable_entries = 200 }))
    for i = 1, 150 do
      assert(db:put(string.format("key%04d", i), string.rep(string.char(65 + i % 26), 40)))
    end
    assert(db:flush())
    for i = 1, 3 do
      assert(db:put("wal" .. i, "value" .. i))
    end
    local trace = assert(db:trace("key0100"))
    db:close()
    local sst_step
    for _, st in ipairs(trace.steps) do
      if st.layer == "sstable" and st.block then
        sst_step = st
      end
    end
    return dir, sst_step
  end

  it("passes an intact directory", function()
    local dir = make_db()
    local out, err, code = kiwi_cmd("check " .. q(dir))
    assert.equal(0, code, err)
    assert.matches("^kiwi check " .. dir:gsub("%p", "%%%0") .. "\n", out)
    assert.matches("\n  %d+%.sst +ok +%d+ data blocks, %d+ bytes\n", out)
    assert.matches("\n  %d+%.log +ok +3 good records", out)
    assert.matches("\n  CURRENT +ok +names MANIFEST%-%d+\n", out)
    assert.matches("\n  MANIFEST%-%d+ +ok +%d+ good records", out)
    assert.matches("%d+ files: %d+ ok, 0 damaged, 0 with a torn tail", out)
    local rep = assert(check.dir(dir))
    assert.equal(0, rep.damaged)
    for _, f in ipairs(rep.files) do
      if f.kind == "sstable" then
        assert.is_true(f.blocks > 5, f.name .. " should have many blocks")
      end
    end
  end)

  it("finds a corrupted SSTable data block and names its offset", function()
    local dir, step = make_db()
    local sst = string.format("%s/%06d.sst", dir, step.id)
    local off = step.block.offset + math.floor(step.block.size / 2)
    flip(sst, off)
    local out, err, code = kiwi_cmd("check " .. q(dir))
    assert.equal(1, code, err)
    local name = string.format("%06d.sst", step.id)
    assert.matches("\n  " .. name .. " +DAMAGED +%d+ data blocks %(1 damaged%)", out)
    assert.truthy(out:find(string.format("data block %d at offset %d (%d bytes): checksum mismatch",
      step.block.index, step.block.offset, step.block.size), 1, true), out)
    assert.matches("1 damaged", out)
    -- the engine agrees: a read of a key in that block reports corruption at the same offset
    local db = assert(kiwi.open(dir, { mode = "dev" }))
    local v, msg, code2 = db:get("key0100")
    db:close()
    assert.is_nil(v)
    assert.equal("corruption", code2)
    assert.truthy(msg:find("block at offset " .. step.block.offset, 1, true), msg)
  end)

  it("finds a corrupted WAL record, and tells a torn tail from damage", function()
    local dir = make_db()
    local logs = helper.files(dir, ".log")
    local wal = dir .. "/" .. logs[#logs]
    local rep = check.file(dir, logs[#logs], {})
    assert.equal("ok", rep.status)
    assert.equal(3, rep.records)
    -- garbage appended after the last record: a torn tail, not damage
    write(wal, read(wal) .. "\5\0\0\0xy")
    rep = check.file(dir, logs[#logs], {})
    assert.equal("torn tail", rep.status)
    local out, _, code = kiwi_cmd("check " .. q(dir))
    assert.equal(0, code)
    assert.matches("torn tail at offset %d+ %(6 bytes, cut off at the next open%)", out)
    -- a byte of the first record's payload flipped: damage at offset 0
    flip(wal, 8 + 3)
    out, _, code = kiwi_cmd("check " .. q(dir))
    assert.equal(1, code)
    assert.matches("\n  " .. logs[#logs] .. " +DAMAGED +2 good records", out)
    assert.matches("record at offset 0: checksum mismatch %(length %d+%)", out)
    -- the engine refuses the same record at open
    local db, msg, code2 = kiwi.open(dir, { mode = "dev" })
    assert.is_nil(db)
    assert.equal("corruption", code2)
    assert.truthy(msg:find("record at offset 0", 1, true), msg)
  end)

  it("finds a damaged footer, index block, CURRENT and config.json", function()
    local dir = make_db()
    local ssts = helper.files(dir, ".sst")
    -- the footer's magic (last byte), then an index block byte (just before the footer)
    local a = dir .. "/" .. ssts[1]
    flip(a, #read(a) - 1)
    local rep = check.file(dir, ssts[1], {})
    assert.equal("damaged", rep.status)
    assert.matches("^footer at offset %d+: bad magic number %(not an SSTable%)$", rep.problems[1])
    flip(a, #read(a) - 1)
    flip(a, #read(a) - 64 - 5 - 2)
    rep = check.file(dir, ssts[1], {})
    assert.matches("^index block at offset %d+ %(%d+ bytes%): checksum mismatch$", rep.problems[1])
    assert.equal("data blocks not checked: the index that locates them is damaged", rep.problems[2])
    -- a truncated table
    write(a, read(a):sub(1, 40))
    rep = check.file(dir, ssts[1], {})
    assert.equal("footer: file is 40 bytes, shorter than the 64-byte footer", rep.problems[1])
    -- CURRENT naming a missing manifest; a config.json with a bad value
    write(dir .. "/CURRENT", "MANIFEST-999999\n")
    write(dir .. "/config.json", '{"max_levels": "x"}')
    write(dir .. "/notes.txt", "hello")
    local out, _, code = kiwi_cmd("check " .. q(dir))
    assert.equal(1, code)
    assert.matches("\n  CURRENT +DAMAGED", out)
    assert.matches("names MANIFEST%-999999, which does not exist", out)
    assert.matches("\n  config.json +DAMAGED", out)
    assert.matches("key 'max_levels': expected an integer", out)
    assert.matches("\n  notes.txt +skipped +not a kiwi file", out)
    assert.matches("3 damaged", out)
  end)

  it("exits 1 for a directory that does not exist", function()
    local out, err, code = kiwi_cmd("check " .. q(helper.tmpdir() .. "/none"))
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("^kiwi check: .*/none: not a directory\n$", err)
  end)
end)
