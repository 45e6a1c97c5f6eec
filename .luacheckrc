-- luacheck configuration (make check-lua).
std = "lua54"
max_line_length = 110
files["spec/"] = { std = "+busted" }
files["scripts/kiwi"] = { std = "lua54" }
