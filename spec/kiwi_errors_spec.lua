-- spec/kiwi_errors_spec.lua: runtime failures come back as nil, msg, code with a message naming
-- the file or setting: the LOCK (busy) within and across processes, a path that is not a
-- directory, a torn WAL tail (tolerated), a flipped byte in an SSTable (corruption on the read
-- that touches it), and bad settings (invalid argument).
local kiwi = require("kiwi")
local helper = require("spec.helper")
local it = helper.both_modes(it) -- every test runs blocking and inside a task

local open = helper.open_db

local function append(path, bytes)
  local f = assert(io.open(path, "ab"))
  f:write(bytes)
  f:close()
end

local function file_size(path)
  local f = assert(io.open(path, "rb"))
  local n = f:seek("end")
  f:close()
  return n
end

-- Flips one byte of a file in place.
local function flip_byte(path, offset)
  local f = assert(io.open(path, "r+b"))
  f:seek("set", offset)
  local b = f:read(1)
  f:seek("set", offset)
  f:write(string.char(b:byte() ~ 0xff))
  f:close()
end

-- A child that opens dir, writes `n` keys (every 10th with sync=true) and SIGKILLs itself
-- before closing, so the WAL is not cut or synced by close.
local KILLED_WRITER = [[
local kiwi = require("kiwi")
local uv = require("luv")
-- one memtable, so every record is in the newest WAL
local db = assert(kiwi.open(arg[1], { mode = "dev", max_memtable_entries = 100000 }))
for i = 1, tonumber(arg[2]) do
  assert(db:put(string.format("w%05d", i), "value" .. i, { sync = i % 10 == 0 }))
end
io.stdout:write("written\n")
io.stdout:flush()
uv.kill(uv.os_getpid(), "sigkill")
]]

describe("kiwi errors", function()
  describe("busy", function()
    it("refuses a second open of the same directory in this process", function()
      local dir = helper.tmpdir()
      local db = open(dir)
      local db2, msg, code = kiwi.open(dir, { mode = "dev" })
      assert.is_nil(db2)
      assert.equal("busy", code)
      assert.matches("^busy: ", msg)
      assert.is_true(db:close())
      db2 = open(dir) -- released by close
      db2:close()
    end)

    it("refuses an open from another process", function()
      local dir = helper.tmpdir()
      local data = dir .. "/db"
      local db = open(data)
      db:put("k", "v")
      local out, rc = helper.run_lua(dir, [[
local kiwi = require("kiwi")
local db, msg, code = kiwi.open(arg[1], { mode = "dev" })
io.write(tostring(db ~= nil), "\n", tostring(code), "\n", tostring(msg), "\n")
if db then db:close() end
]], data)
      assert.equal(0, rc, out)
      local opened, code, msg = out:match("^(%a+)\n([^\n]*)\n([^\n]*)\n")
      assert.equal("false", opened, out)
      assert.equal("busy", code)
      assert.matches("^busy: ", msg)
      db:close()
      -- and once it is closed the other process gets in
      out = helper.run_lua(dir, [[
local kiwi = require("kiwi")
local db = assert(kiwi.open(arg[1], { mode = "dev" }))
io.write(db:get("k"), "\n")
db:close()
]], data)
      assert.equal("v\n", out)
    end)
  end)

  it("names the path when it is a regular file", function()
    local dir = helper.tmpdir()
    local path = dir .. "/plainfile"
    append(path, "not a db")
    local db, msg, code = kiwi.open(path, { mode = "dev" })
    assert.is_nil(db)
    assert.is_string(code)
    assert.not_equal("ok", code)
    assert.matches("^" .. code:gsub("%p", "%%%0") .. ": ", msg)
    assert.truthy(msg:find(path, 1, true), "message names the path: " .. msg)
  end)

  describe("torn WAL tail", function()
    local function newest_log(data)
      local logs = helper.files(data, ".log")
      assert.is_true(#logs > 0, "a WAL file exists")
      return data .. "/" .. logs[#logs]
    end

    for _, tail in ipairs({
      { "a partial record header", "\7\0\0" },
      { "a header whose payload is cut short", "\100\0\0\0\1\2\3\4" .. string.rep("x", 10) },
      { "a whole-length record with a bad CRC", "\4\0\0\0\0\0\0\0abcd" },
    }) do
      it("keeps every whole record before " .. tail[1], function()
        local dir = helper.tmpdir()
        local data = dir .. "/db"
        local n = 300
        local out = helper.run_lua(dir, KILLED_WRITER, data, n)
        assert.matches("written", out)
        local log = newest_log(data)
        local size = file_size(log)
        append(log, tail[2])
        local db = open(data)
        for i = 1, n do
          assert.equal("value" .. i, db:get(string.format("w%05d", i)))
        end
        local count = 0
        for _ in db:scan() do
          count = count + 1
        end
        assert.equal(n, count)
        assert.is_true(db:put("after", "recovery", { sync = true }))
        assert.is_true(db:close())
        db = open(data)
        assert.equal("recovery", db:get("after"))
        assert.equal("value" .. n, db:get(string.format("w%05d", n)))
        db:close()
        assert.is_true(size > 0)
      end)
    end
  end)

  it("reports a flipped byte in an SSTable data block as corruption naming the file", function()
    local dir = helper.tmpdir()
    local db = open(dir, { max_memtable_entries = 100000 }) -- one SSTable
    local value = string.rep("v", 100)
    for i = 1, 2000 do
      db:put(string.format("c%05d", i), value .. i)
    end
    assert.is_true(db:flush())
    assert.is_true(db:close())
    local ssts = helper.files(dir, ".sst")
    assert.equal(1, #ssts)
    local path = dir .. "/" .. ssts[1]
    flip_byte(path, 20) -- inside the first entry of the first data block
    db = open(dir)
    local v, msg, code = db:get("c00001")
    assert.is_nil(v)
    assert.equal("corruption", code)
    assert.matches("^corruption: ", msg)
    assert.truthy(msg:find(ssts[1], 1, true), "message names the file: " .. tostring(msg))
    -- keys in other blocks still read
    assert.equal(value .. 2000, db:get("c02000"))
    assert.equal(value .. 1000, db:get("c01000"))
    -- a scan that reaches the bad block raises the engine's message
    local ok, err = pcall(function()
      for _ in db:scan() do end
    end)
    assert.is_false(ok)
    assert.matches("corruption: ", tostring(err))
    -- a scan that avoids it works
    local count = 0
    for _ in db:scan("c01000", "c01010") do
      count = count + 1
    end
    assert.equal(10, count)
    db:close()
  end)

  describe("size limits", function()
    it("refuses a key over 64 KiB", function()
      local db = open(helper.tmpdir())
      local big = string.rep("k", 64 * 1024 + 1)
      local ok, msg, code = db:put(big, "v")
      assert.is_nil(ok)
      assert.equal("invalid argument", code)
      assert.matches("^invalid argument: ", msg)
      assert.is_true(db:put(big:sub(2), "v")) -- exactly the limit is fine
      assert.is_nil(db:get(big))
      db:close()
    end)

    it("refuses a batch holding an oversize key and writes none of it", function()
      local db = open(helper.tmpdir())
      local b = kiwi.batch()
      b:put("before", "1")
      b:put(string.rep("k", 64 * 1024 + 1), "v")
      b:put("after", "2")
      local ok, msg, code = db:write(b)
      assert.is_nil(ok, "the batch was accepted")
      assert.equal("invalid argument", code)
      assert.matches("^invalid argument: ", msg)
      assert.is_nil(db:get("before"))
      assert.is_nil(db:get("after"))
      db:close()
    end)
  end)

  describe("settings", function()
    it("rejects an unknown setting, naming it", function()
      local db, msg, code = kiwi.open(helper.tmpdir(), { mode = "dev", no_such_setting = 1 })
      assert.is_nil(db)
      assert.equal("invalid argument", code)
      assert.matches("^invalid argument: ", msg)
      assert.matches("no_such_setting", msg)
    end)

    it("rejects a bad value, naming the setting", function()
      for _, bad in ipairs({
        { "max_memtable_entries", "abc" },
        { "max_memtable_entries", -5 },
        { "bloom_fpr_dev", 2 },
        { "sync_writes", "perhaps" },
        { "wal_writes", "buffered" },
        { "sync_waits", "spin" },
      }) do
        local name = bad[1]
        local db, msg, code = kiwi.open(helper.tmpdir(), { mode = "dev", [name] = bad[2] })
        assert.is_nil(db, name)
        assert.equal("invalid argument", code)
        assert.matches(name, msg, 1, true)
      end
    end)

    it("rejects an unknown mode", function()
      local db, msg, code = kiwi.open(helper.tmpdir(), { mode = "turbo" })
      assert.is_nil(db)
      assert.equal("invalid argument", code)
      assert.matches("turbo", msg)
    end)

    it("changes a live setting and refuses unknown ones", function()
      local db = open(helper.tmpdir())
      assert.is_true(db:update_config("max_memtable_entries", 5000))
      local ok, msg, code = db:update_config("no_such_setting", 1)
      assert.is_nil(ok)
      assert.equal("invalid argument", code)
      assert.matches("no_such_setting", msg)
      db:close()
    end)

    it("answers an unknown property with invalid argument", function()
      local db = open(helper.tmpdir())
      local t, msg, code = db:property("no-such-property")
      assert.is_nil(t)
      assert.equal("invalid argument: unknown property no-such-property", msg)
      assert.equal("invalid argument", code)
      db:close()
    end)
  end)
end)
