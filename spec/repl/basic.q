# put, get, del and scan; quoting and escapes; the table layout of scan
> put user:1 "Alice Smith"
OK
> put 'user:2' Bob
OK
> get user:1
Alice Smith
> get user:3
(nil)
> put bin "\x00\xff\t"
OK
> get bin
\x00\xff\x09
> put "a b\\c" x\ y
OK
> get 'a b\c'
x y
> scan
key     value
a b\\c  x y
bin     \x00\xff\x09
user:1  Alice Smith
user:2  Bob
(4 entries)
> scan user: user:2
key     value
user:1  Alice Smith
(1 entry)
> scan "" "" 1
key     value
a b\\c  x y
(more; showing the first 1)
> scan zz
(0 entries)
> del user:1
OK
> get user:1
(nil)
> del never-there
OK
> put "" empty-key
OK
> get ""
empty-key
>
> exit
