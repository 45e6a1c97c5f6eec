# the Lua escape: `lua <code>` and the `:lua` mode, with db in scope
> lua 1 + 2
3
> lua db:put("k", "v")
true
> lua db:get("k")
"v"
> lua db:get("missing")
nil
> lua print("hi", 2)
hi	2
> lua { a = 1, "x", b = { 2 } }
{ "x", a = 1, b = { 2 } }
> lua kiwi.version == require("kiwi").version
true
> :lua
Lua mode: db, kiwi and cfg are in scope; :kiwi returns
> counter = 41
> function bump()
> counter = counter + 1
> return counter
> end
> bump()
42
> db:get("k")
"v"
> error("inside")
error: lua:1: inside
> :kiwi
> get k
v
> lua counter
42
