# config shows every setting with its source; config set applies live and saves config.json
> config set max_memtable_entries 20
~^OK: max_memtable_entries = 20 %(saved to .*/config.json%)$
> lua return db:config().max_memtable_entries
20
> config set bloom_fpr_dev 0.02
~^OK: bloom_fpr_dev = 0.02 %(saved to .*/config.json%)$
> config set sync_writes true
~^OK: sync_writes = true
> config set log_level warn
~^OK: log_level = warn
> lua local t = {}; for l in io.lines(cfg.path) do if not l:find('"mode"') then t[#t + 1] = l end end; return table.concat(t, " ")
"{   \"bloom_fpr_dev\": 0.02,   \"log_level\": \"warn\",   \"max_memtable_entries\": 20,   \"sync_writes\": true }"
> config
~^setting +value +source +live$
~^mode +dev +default +no$
...
~^bloom_fpr_dev +0.02 +file +yes$
...
~^log_level +warn +file +yes$
~^log_port +0 +default +no$
...
~^max_memtable_entries +20 +file +yes$
...
~^sync_writes +true +file +yes$
...
> config set mode prod
~^error: invalid argument: setting mode cannot change on a running db
> config set log_port 5000
~^error: invalid argument: setting log_port cannot change on a running db
