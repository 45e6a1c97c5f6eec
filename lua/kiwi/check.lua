--- kiwi.check: verifies every checksum of every file in a data directory (`kiwi check DIR`).
--
--     local check = require("kiwi.check")
--     local report = check.dir("./data")
--     for _, f in ipairs(report.files) do print(f.name, f.status, f.detail) end
--
-- It reads the files directly, without opening the db (so it also works on a directory that no
-- longer opens), following the formats in docs/internals/:
--
--  * WAL (`NNNNNN.log`) and manifest (`MANIFEST-NNNNNN`): records `[u32 len][u32 crc][payload]`,
--    CRC-32C of the payload. A bad record followed by more data is damage; a record cut short, or
--    a bad last record that ends exactly at the end of the file, is a torn tail (an interrupted
--    write that recovery cuts off): reported, but not damage.
--  * SSTable (`NNNNNN.sst`): the 64-byte footer (magic, CRC, version, handles that tile the
--    file), the filter, properties and index blocks, then every data block the index names, each
--    checked against the CRC-32C in its 5-byte trailer.
--  * CURRENT must name an existing manifest; config.json must pass kiwi.config's validation.
--
-- The C API has no verify call yet (kw_table_verify is internal), so this is Lua: CRC-32C by
-- slicing-by-8 tables, about 35 MB/s on the build machine.
-- @module kiwi.check

local byte = string.byte
local format = string.format
local sort = table.sort
local strunpack = string.unpack
local io_open = io.open

local M = {}

M.WAL_MAX_RECORD = 512 * 1024 * 1024 -- a longer length field is corrupt (core/src/wal.h)
M.SST_MAGIC = 0x0054535369776b69
M.SST_FOOTER = 64
M.SST_TRAILER = 5

-- ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), slicing-by-8 ------------------------

local T0, T1, T2, T3, T4, T5, T6, T7
do
  local t = { {}, {}, {}, {}, {}, {}, {}, {} }
  for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
      c = (c & 1 == 1) and ((c >> 1) ~ 0x82F63B78) or (c >> 1)
    end
    t[1][i] = c
  end
  for i = 0, 255 do
    local c = t[1][i]
    for k = 2, 8 do
      c = (c >> 8) ~ t[1][c & 0xff]
      t[k][i] = c
    end
  end
  T0, T1, T2, T3, T4, T5, T6, T7 = t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8]
end

--- CRC-32C of bytes i..j of s (default: all of s), optionally extending an earlier CRC.
-- @tparam string s
-- @tparam[opt=1] integer i
-- @tparam[opt=#s] integer j
-- @tparam[opt=0] integer crc a CRC to extend (as kw_crc32c_extend)
-- @treturn integer the CRC, 0..2^32-1
function M.crc32c(s, i, j, crc)
  i = i or 1
  j = j or #s
  crc = ~(crc or 0) & 0xffffffff
  while i + 7 <= j do
    local a, b = strunpack("<I4I4", s, i)
    a = a ~ crc
    crc = T7[a & 0xff] ~ T6[(a >> 8) & 0xff] ~ T5[(a >> 16) & 0xff] ~ T4[a >> 24]
      ~ T3[b & 0xff] ~ T2[(b >> 8) & 0xff] ~ T1[(b >> 16) & 0xff] ~ T0[b >> 24]
    i = i + 8
  end
  while i <= j do
    crc = (crc >> 8) ~ T0[(crc ~ byte(s, i)) & 0xff]
    i = i + 1
  end
  return ~crc & 0xffffffff
end

local crc32c = M.crc32c

-- ---- reports ------------------------------------------------------------------------------------

-- A report is { name, kind, status = "ok" | "damaged" | "torn tail" | "skipped", detail,
-- problems = { "what at offset N", ... } }.
local function report(name, kind)
  return { name = name, kind = kind, status = "ok", detail = "", problems = {} }
end

local function damage(r, msg)
  r.status = "damaged"
  r.problems[#r.problems + 1] = msg
end

local function read_all(path)
  local f, err = io_open(path, "rb")
  if not f then
    return nil, err
  end
  local s = f:read("a")
  f:close()
  return s
end

local function plural(n, word)
  return format("%d %s%s", n, word, n == 1 and "" or "s")
end

-- ---- WAL and manifest ---------------------------------------------------------------------------

--- Checks a record log (a WAL or a manifest): every record's CRC.
-- @tparam string data the file's bytes
-- @tparam table r the report to fill (fields records, torn_offset, torn_bytes are added)
function M.check_records(data, r)
  local n, off, size = 0, 0, #data
  r.records = 0
  while off < size do
    if size - off < 8 then
      r.torn_offset, r.torn_bytes = off, size - off
      break
    end
    local len, crc = strunpack("<I4I4", data, off + 1)
    if len > M.WAL_MAX_RECORD then
      damage(r, format("record at offset %d: length %d exceeds the limit of %d bytes"
        .. " (the rest of the file, %d bytes, cannot be checked)", off, len, M.WAL_MAX_RECORD,
        size - off))
      break
    end
    local stop = off + 8 + len
    if stop > size then
      r.torn_offset, r.torn_bytes = off, size - off
      break
    end
    if crc32c(data, off + 9, stop) ~= crc then
      if stop == size then
        r.torn_offset, r.torn_bytes = off, size - off
        r.torn_crc = true
        break
      end
      damage(r, format("record at offset %d: checksum mismatch (length %d)", off, len))
    else
      n = n + 1
    end
    off = stop
  end
  r.records = n
  if r.status == "ok" and r.torn_offset then
    r.status = "torn tail"
  end
  local detail = plural(n, "good record") .. ", " .. plural(size, "byte")
  if r.torn_offset then
    detail = detail .. format("; torn tail at offset %d (%s%s, cut off at the next open)",
      r.torn_offset, plural(r.torn_bytes, "byte"), r.torn_crc and ", bad checksum" or "")
  end
  r.detail = detail
  return r
end

-- ---- SSTable ------------------------------------------------------------------------------------

-- Decodes a LEB128 varint at 1-based position i of s, not reading at or past `limit`.
-- Returns value, next position; or nil when it runs past limit or is too long.
local function varint(s, i, limit)
  local v, shift = 0, 0
  while i < limit and shift <= 63 do
    local b = byte(s, i)
    v = v | ((b & 0x7f) << shift)
    i = i + 1
    if b < 0x80 then
      return v, i
    end
    shift = shift + 7
  end
  return nil
end

-- Checks the block at [off, off+size) and its trailer. Returns nil, or a problem message.
local function check_block(data, off, size, what)
  local tstart = off + size
  if off < 0 or size < 0 or tstart + M.SST_TRAILER > #data then
    return format("%s at offset %d: size %d runs past the end of the file", what, off, size)
  end
  local ctype, stored = strunpack("<BI4", data, tstart + 1)
  local crc = crc32c(data, tstart + 1, tstart + 1, crc32c(data, off + 1, tstart))
  if crc ~= stored then
    return format("%s at offset %d (%d bytes): checksum mismatch", what, off, size)
  end
  if ctype ~= 0 then
    return format("%s at offset %d: unknown compression type %d", what, off, ctype)
  end
  return nil
end

-- Parses the index block (already CRC-checked) into a list of data block handles.
-- Returns the list, or nil and a problem message.
local function index_handles(data, off, size)
  if size < 4 then
    return nil, format("index block at offset %d: %d bytes is too short", off, size)
  end
  local restarts = strunpack("<I4", data, off + size - 3)
  local entries_end = off + size - 4 - 4 * restarts -- 0-based end of the entries
  if entries_end < off then
    return nil, format("index block at offset %d: restart count %d does not fit", off, restarts)
  end
  local handles, pos, limit = {}, off + 1, entries_end + 1
  while pos < limit do
    local n = #handles
    local shared, non_shared, vlen
    shared, pos = varint(data, pos, limit)
    if shared then
      non_shared, pos = varint(data, pos, limit)
    end
    if non_shared then
      vlen, pos = varint(data, pos, limit)
    end
    if not vlen or pos + non_shared + vlen > limit then
      return nil, format("index block at offset %d: entry %d is malformed", off, n)
    end
    local vpos = pos + non_shared
    local boff, p2 = varint(data, vpos, vpos + vlen)
    local bsize = boff and varint(data, p2, vpos + vlen)
    if not bsize then
      return nil, format("index block at offset %d: entry %d: bad block handle", off, n)
    end
    handles[n + 1] = { offset = boff, size = bsize }
    pos = vpos + vlen
  end
  return handles
end

-- Checks the footer; returns the six handles, or nil and a problem message.
local function check_footer(data)
  local size = #data
  if size < M.SST_FOOTER then
    return nil, format("footer: file is %d bytes, shorter than the %d-byte footer", size,
      M.SST_FOOTER)
  end
  local foff = size - M.SST_FOOTER
  local h = { strunpack("<I8I8I8I8I8I8I4I4I8", data, foff + 1) }
  if h[9] ~= M.SST_MAGIC then
    return nil, format("footer at offset %d: bad magic number (not an SSTable)", foff)
  end
  if crc32c(data, foff + 1, foff + 52) ~= h[8] then
    return nil, format("footer at offset %d: checksum mismatch", foff)
  end
  if h[7] ~= 1 then
    return nil, format("footer at offset %d: unsupported format version %d", foff, h[7])
  end
  local parts = { { "filter block", h[1], h[2] }, { "properties block", h[3], h[4] },
    { "index block", h[5], h[6] } }
  local ends = { h[3], h[5], foff }
  for i, p in ipairs(parts) do
    if p[2] + p[3] + M.SST_TRAILER ~= ends[i] then
      return nil, format("footer at offset %d: %s handle (%d, %d) does not end where the next"
        .. " part starts", foff, p[1], p[2], p[3])
    end
  end
  return parts
end

--- Checks an SSTable: footer, meta blocks, every data block's CRC.
-- @tparam string data the file's bytes
-- @tparam table r the report to fill (field blocks is added)
function M.check_sst(data, r)
  local parts, err = check_footer(data)
  if not parts then
    damage(r, err)
    return r
  end
  for _, p in ipairs(parts) do
    local perr = check_block(data, p[2], p[3], p[1])
    if perr then
      damage(r, perr)
    end
  end
  local index = parts[3]
  if r.status ~= "ok" and r.problems[#r.problems]:find("^index block") then
    r.problems[#r.problems + 1] = "data blocks not checked: the index that locates them is damaged"
    return r
  end
  local handles, ierr = index_handles(data, index[2], index[3])
  if not handles then
    damage(r, ierr)
    return r
  end
  local expect, bad = 0, 0
  for i, h in ipairs(handles) do
    if h.offset ~= expect then
      damage(r, format("data block %d: starts at offset %d, expected %d", i - 1, h.offset, expect))
    end
    local berr = check_block(data, h.offset, h.size, format("data block %d", i - 1))
    if berr then
      bad = bad + 1
      damage(r, berr)
    end
    expect = h.offset + h.size + M.SST_TRAILER
  end
  if expect ~= parts[1][2] then
    damage(r, format("data blocks end at offset %d, but the filter block starts at %d", expect,
      parts[1][2]))
  end
  r.blocks = #handles
  r.detail = format("%s (%d damaged), %s", plural(#handles, "data block"), bad,
    plural(#data, "byte"))
  if bad == 0 then
    r.detail = format("%s, %s", plural(#handles, "data block"), plural(#data, "byte"))
  end
  return r
end

-- ---- the directory ------------------------------------------------------------------------------

local function kind_of(name)
  if name:match("^%d+%.log$") then
    return "wal"
  elseif name:match("^MANIFEST%-%d+$") then
    return "manifest"
  elseif name:match("^%d+%.sst$") then
    return "sstable"
  elseif name == "CURRENT" then
    return "current"
  elseif name == "config.json" then
    return "config"
  end
  return nil
end

local function check_current(data, r, exists)
  local m = data:match("^(MANIFEST%-%d+)\n$")
  if not m then
    damage(r, format("expected \"MANIFEST-NNNNNN\\n\", found %q", data:sub(1, 40)))
  elseif not exists[m] then
    damage(r, "names " .. m .. ", which does not exist")
  else
    r.detail = "names " .. m
  end
  return r
end

local function check_config(path, r)
  local ok, config = pcall(require, "kiwi.config")
  if not ok then
    r.status, r.detail = "skipped", "kiwi.config is not available"
    return r
  end
  local _, err = config.read_file(path)
  if err then
    damage(r, err)
  else
    r.detail = "valid"
  end
  return r
end

--- Checks one file of a data directory.
-- @tparam string dir the directory
-- @tparam string name the file name
-- @tparam table exists the set of names in dir (for CURRENT)
-- @treturn table a report
function M.file(dir, name, exists)
  local kind = kind_of(name)
  local r = report(name, kind or "other")
  if not kind then
    r.status, r.detail = "skipped", "not a kiwi file"
    return r
  end
  local path = dir .. "/" .. name
  if kind == "config" then
    return check_config(path, r)
  end
  local data, err = read_all(path)
  if not data then
    damage(r, "cannot read: " .. tostring(err))
    return r
  end
  if kind == "wal" or kind == "manifest" then
    return M.check_records(data, r)
  elseif kind == "sstable" then
    return M.check_sst(data, r)
  end
  return check_current(data, r, exists)
end

--- Checks every file of a data directory.
-- @tparam string dir
-- @return { dir, files = {report...}, damaged = n, ok = n, torn = n }, or nil, msg
function M.dir(dir)
  local uv = require("luv")
  local st = uv.fs_stat(dir)
  if not st or st.type ~= "directory" then
    return nil, dir .. ": not a directory"
  end
  local names, exists = {}, {}
  local req, err = uv.fs_scandir(dir)
  if not req then
    return nil, tostring(err)
  end
  while true do
    local name, t = uv.fs_scandir_next(req)
    if not name then
      break
    end
    exists[name] = true
    if t ~= "directory" and name ~= "LOCK" and name ~= ".kiwi_history" then
      names[#names + 1] = name
    end
  end
  sort(names)
  local out = { dir = dir, files = {}, damaged = 0, ok = 0, torn = 0, skipped = 0 }
  for _, name in ipairs(names) do
    local r = M.file(dir, name, exists)
    out.files[#out.files + 1] = r
    if r.status == "damaged" then
      out.damaged = out.damaged + 1
    elseif r.status == "torn tail" then
      out.torn = out.torn + 1
    elseif r.status == "skipped" then
      out.skipped = out.skipped + 1
    else
      out.ok = out.ok + 1
    end
  end
  return out
end

--- Formats a directory report as aligned text (one line per file, problems indented below).
-- @tparam table rep from M.dir
-- @treturn string
function M.format(rep)
  local w = 4
  for _, r in ipairs(rep.files) do
    w = math.max(w, #r.name)
  end
  local lines = { "kiwi check " .. rep.dir }
  for _, r in ipairs(rep.files) do
    local status = r.status == "damaged" and "DAMAGED" or r.status
    lines[#lines + 1] = format("  %-" .. w .. "s  %-9s  %s", r.name, status, r.detail):gsub("%s+$", "")
    for _, p in ipairs(r.problems) do
      lines[#lines + 1] = format("  %-" .. w .. "s    %s", "", p)
    end
  end
  lines[#lines + 1] = format("%s: %d ok, %d damaged, %d with a torn tail, %d skipped",
    plural(#rep.files, "file"), rep.ok, rep.damaged, rep.torn, rep.skipped)
  return table.concat(lines, "\n")
end

--- The `kiwi check DIR` subcommand.
-- @tparam table opts `dir` (the directory), `out`, `err` (files, default io.stdout/io.stderr)
-- @treturn integer the exit code: 0 nothing damaged, 1 damage found or the directory unreadable
function M.run(opts)
  local out, errf = opts.out or io.stdout, opts.err or io.stderr
  local rep, err = M.dir(opts.dir)
  if not rep then
    errf:write("kiwi check: ", err, "\n")
    return 1
  end
  out:write(M.format(rep), "\n")
  return rep.damaged > 0 and 1 or 0
end

return M
