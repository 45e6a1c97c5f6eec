# bad input: every error prints and the session goes on
> frobnicate x
error: unknown command 'frobnicate' (try help)
> put onlykey
error: usage: put <key> <value>
> put a b c
error: usage: put <key> <value>
> get
error: usage: get <key>
> del a b
error: usage: del <key>
> scan a b 5 extra
error: usage: scan [start] [end] [limit]
> scan a b x
error: limit must be a non-negative integer, not 'x'
> scan a b -1
error: limit must be a non-negative integer, not '-1'
> get "open
error: unterminated quote opened at column 5
> get 'open
error: unterminated quote opened at column 5
> get a\q
error: unknown escape \q at column 6
> get "a\x4"
error: \x needs two hex digits at column 7
> get a\
error: backslash at the end of the line at column 6
> mem x
error: an id is a non-negative integer, not 'x'
> mem 999
error: no memtable 999 (mem lists them)
> disk 999
error: no SSTable 999 (disk lists them)
> disk 1 2
error: usage: disk [id]
> trace
error: usage: trace <key>
> config get x
error: usage: config | config set <name> <value>
> config set max_levels x
error: invalid argument: setting max_levels: expected a whole number, got "x"
> config set flush_max_workers 3
error: invalid argument: setting flush_max_workers cannot change on a running db (set it before open)
> config set max_memtable_entries 0
error: invalid argument: setting max_memtable_entries: 0 is out of range (allowed 1..1000000000)
> config set nope 1
error: invalid argument: unknown setting 'nope'
> help nope
error: unknown command 'nope'
> lua
error: usage: lua <code>
> lua error("boom")
error: lua:1: boom
> lua 1 +
error: lua:1: unexpected symbol near '1'
> \x01
error: unknown command '\x01' (try help)
> put k v
OK
> get k
v
