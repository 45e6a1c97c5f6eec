# mem, disk, stats and trace on a dev-mode db (memtables rotate after 10 entries)
> lua for i = 1, 12 do assert(db:put(string.format("k%02d", i), "v" .. i)) end
> flush
OK
> put k05 new
OK
> del k07
OK
> mem
~^id  state%s+entries  tombstones  bytes  user_bytes$
~^%s*%d+  active%s+2%s+1%s+%d+%s+%d+$
> lua local m = db:memtables()[1]; return m.num_entries, m.tombstones
2
1
> disk
~^level  id  bytes  entries  tombstones  seq%s+smallest  largest$
~^    0%s+%d+%s+%d+%s+%d+%s+0%s+%d+%.%.%d+%s+k%d%d%s+k%d%d$
~^    0%s+%d+%s+%d+%s+%d+%s+0%s+%d+%.%.%d+%s+k%d%d%s+k%d%d$
~^%(2 SSTables; L0 2, L1 0, L2 0, L3 0%)$
> lua local n = 0; for _, f in ipairs(db:sstables()[1].files) do n = n + f.num_entries end; return n
12
> trace k05
~^step  layer%s+level  id  in_range  bloom  block  cache  result$
~^%s+1  memtable%s+%d+%s+found$
result: found = new (at sequence 14)
> trace k07
~^step  layer%s+level  id  in_range  bloom  block  cache  result$
~^%s+1  memtable%s+%d+%s+deleted$
result: deleted (at sequence 14)
> trace k01
~^step
~^%s+1  memtable
~^%s+2  sstable
~^.*
~^result: found = v1 %(at sequence 14%)$
> lua return #db:memtable(db:memtables()[1].id).entries
2
> lua local id = db:sstables()[1].files[1].id; return (assert(require("kiwi.repl").execute(db, "disk " .. id)):match("^sstable %d+ %(L0, %d+ bytes, %d+ entr[iesy]+, 0 tombstones, seq %d+%.%.%d+%)"))
~^"sstable %d+ %(L0
> lua local id = db:memtables()[1].id; return (require("kiwi.repl").execute(db, "mem " .. id))
~^"memtable %d+ %(active%): 2 entries, 1 tombstone, %d+ bytes\nkey  seq  type    value\nk05   13  put     new\nk07   14  delete"$
> lua return db:stats().puts
13
> lua local ok, msg = db:compact_range(); return ok or msg:find("not part of this build", 1, true) ~= nil
true
> compact
...
> get k05
new
