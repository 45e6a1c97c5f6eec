--- kiwi.cli: the `kiwi` command: subcommands, their flags, usage messages and exit codes.
--
--     kiwi repl [--data DIR] [--mode dev|prod] [--config FILE]
--     kiwi logs [--port N] [--level L] [--data DIR] [--raw] [--count N]
--     kiwi bench [...]          (when kiwi.bench is installed)
--     kiwi check DIR
--     kiwi version
--
-- Each subcommand is one entry of a registry (`M.register`): its name, summary, flags,
-- positional arguments and a `run(opts)` returning the exit code. An entry may say it is not
-- `available()` (kiwi.bench missing, say): it is then neither listed nor runnable. The server
-- (`kiwi api`) and the dashboard (`kiwi web`) plug in later as one entry each.
--
-- Exit codes: 0 success; 1 the command ran and failed (or found damage); 2 a usage error
-- (unknown subcommand or flag, a missing or bad argument), with the usage on stderr.
-- @module kiwi.cli

local concat = table.concat
local format = string.format
local ipairs = ipairs
local pairs = pairs
local sort = table.sort
local tostring = tostring

local M = {}

M.commands = {} -- name -> entry
M.order = {} -- names in registration order

--- The flags every db subcommand takes.
M.COMMON_FLAGS = {
  data = { arg = "DIR", doc = "the data directory (default ./data)" },
  mode = { arg = "dev|prod", doc = "the mode's defaults (default: config.json's, else dev)",
    check = function(v) return v == "dev" or v == "prod", "must be dev or prod" end },
  config = { arg = "FILE", doc = "the config file (default DIR/config.json)" },
}

--- Adds a subcommand.
-- @tparam table entry `name`, `summary`, `args` (names of required positional arguments),
--   `flags` (name -> { arg = "N" | nil for a switch, doc, check = fn(value) -> ok, reason,
--   int = true }), `common` (accepts COMMON_FLAGS), `help` (more text), `available` (fn ->
--   true | false, reason), `run` (fn(opts) -> exit code; opts has the flags by name and the
--   positional arguments by their lower-case names)
function M.register(entry)
  assert(type(entry.name) == "string" and type(entry.run) == "function", "bad subcommand entry")
  if not M.commands[entry.name] then
    M.order[#M.order + 1] = entry.name
  end
  M.commands[entry.name] = entry
end

local function available(entry)
  if not entry.available then
    return true
  end
  local ok, reason = entry.available()
  return ok, reason
end

local function flag_table(entry)
  local t = {}
  if entry.common then
    for k, v in pairs(M.COMMON_FLAGS) do
      t[k] = v
    end
  end
  for k, v in pairs(entry.flags or {}) do
    t[k] = v
  end
  return t
end

local function synopsis(entry)
  local parts = { "kiwi", entry.name }
  for _, a in ipairs(entry.args or {}) do
    parts[#parts + 1] = a
  end
  local flags = flag_table(entry)
  local names = {}
  for k in pairs(flags) do
    names[#names + 1] = k
  end
  sort(names)
  for _, k in ipairs(names) do
    parts[#parts + 1] = flags[k].arg and format("[--%s %s]", k, flags[k].arg) or format("[--%s]", k)
  end
  return concat(parts, " ")
end

--- The top-level usage text (only the available subcommands).
function M.usage()
  local lines = { "usage: kiwi <command> [options]", "", "commands:" }
  for _, name in ipairs(M.order) do
    local e = M.commands[name]
    if available(e) then
      local head = name
      for _, a in ipairs(e.args or {}) do
        head = head .. " " .. a
      end
      lines[#lines + 1] = format("  %-12s %s", head, e.summary)
    end
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "kiwi <command> --help describes a command."
  return concat(lines, "\n") .. "\n"
end

--- The usage text of one subcommand.
function M.command_usage(entry)
  local lines = { "usage: " .. synopsis(entry), "", entry.summary }
  if entry.help then
    lines[#lines + 1] = ""
    lines[#lines + 1] = entry.help
  end
  local flags = flag_table(entry)
  local names = {}
  for k in pairs(flags) do
    names[#names + 1] = k
  end
  sort(names)
  if #names > 0 then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "options:"
    for _, k in ipairs(names) do
      local f = flags[k]
      lines[#lines + 1] = format("  %-22s %s", "--" .. k .. (f.arg and " " .. f.arg or ""), f.doc or "")
    end
  end
  lines[#lines + 1] = format("  %-22s %s", "-h, --help", "this text")
  return concat(lines, "\n") .. "\n"
end

-- A usage error: raised inside parse, caught by main.
local USAGE = {}

local function usage_error(msg, entry)
  error({ [USAGE] = true, msg = msg, entry = entry }, 0)
end

--- Parses a subcommand's arguments.
-- @tparam table entry
-- @tparam table argv the words after the subcommand's name
-- @treturn table opts (flags by name; positional arguments by lower-case name; `help` = true
--   for --help)
function M.parse(entry, argv)
  local flags = flag_table(entry)
  local opts, positional = {}, {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "-h" or a == "--help" then
      opts.help = true
      return opts
    end
    local name, value = a:match("^%-%-([%w-]+)=(.*)$")
    if not name then
      name = a:match("^%-%-([%w-]+)$")
    end
    if name then
      local f = flags[name]
      if not f then
        usage_error("unknown flag '--" .. name .. "'", entry)
      end
      if f.arg then
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then
            usage_error(format("flag '--%s' needs a value (%s)", name, f.arg), entry)
          end
        end
        if f.int then
          local n = math.tointeger(tonumber(value))
          if not n then
            usage_error(format("flag '--%s' takes an integer, not '%s'", name, value), entry)
          end
          value = n
        end
        if f.check then
          local ok, reason = f.check(value)
          if not ok then
            usage_error(format("flag '--%s': %s, not '%s'", name, reason, tostring(value)), entry)
          end
        end
      elseif value ~= nil then
        usage_error(format("flag '--%s' takes no value", name), entry)
      else
        value = true
      end
      opts[name] = value
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      usage_error("unknown flag '" .. a .. "'", entry)
    else
      positional[#positional + 1] = a
    end
    i = i + 1
  end
  local want = entry.args or {}
  if #positional < #want then
    usage_error(format("missing argument %s", want[#positional + 1]), entry)
  elseif #positional > #want then
    usage_error(format("unexpected argument '%s'", positional[#want + 1]), entry)
  end
  for j, a in ipairs(want) do
    opts[a:lower()] = positional[j]
  end
  return opts
end

--- Runs the command line `argv` (the words after `kiwi`).
-- @tparam table argv
-- @tparam[opt] table io_ `out`, `err` (files)
-- @treturn integer the exit code
function M.main(argv, io_)
  io_ = io_ or {}
  local out, err = io_.out or io.stdout, io_.err or io.stderr
  local name = argv[1]
  if name == nil then
    err:write("kiwi: missing command\n", M.usage())
    return 2
  elseif name == "help" or name == "--help" or name == "-h" then
    local e = argv[2] and M.commands[argv[2]]
    if e and available(e) then
      out:write(M.command_usage(e))
    elseif argv[2] then
      err:write("kiwi: unknown command '", argv[2], "'\n", M.usage())
      return 2
    else
      out:write(M.usage())
    end
    return 0
  elseif name == "--version" then
    name = "version"
  end
  local entry = M.commands[name]
  if not entry then
    if name:sub(1, 1) == "-" then
      err:write("kiwi: unknown flag '", name, "'\n", M.usage())
    else
      err:write("kiwi: unknown command '", name, "'\n", M.usage())
    end
    return 2
  end
  local ok, why = available(entry)
  if not ok then
    err:write(format("kiwi %s: unavailable in this installation (%s)\n", name, tostring(why)))
    return 1
  end
  local pok, opts = pcall(M.parse, entry, { table.unpack(argv, 2) })
  if not pok then
    if type(opts) == "table" and opts[USAGE] then
      err:write("kiwi ", name, ": ", opts.msg, "\n", M.command_usage(entry))
      return 2
    end
    error(opts, 0)
  end
  if opts.help then
    out:write(M.command_usage(entry))
    return 0
  end
  opts.out, opts.err = out, err
  local code = entry.run(opts)
  return math.tointeger(code) or 0
end

-- ---- the subcommands ----------------------------------------------------------------------------

M.register({
  name = "repl",
  summary = "interactive shell on a data directory",
  common = true,
  help = "Line editing, history (DIR/.kiwi_history) and tab completion on a terminal; plain lines\n"
    .. "from a pipe. Type help inside for the commands.",
  run = function(opts)
    local repl = require("kiwi.repl")
    local ok, msg = repl.run({ data = opts.data, mode = opts.mode, config = opts.config })
    if not ok then
      opts.err:write("kiwi repl: ", tostring(msg), "\n")
      return 1
    end
    return 0
  end,
})

M.register({
  name = "logs",
  summary = "follow the log stream of a running kiwi, pretty-printed",
  flags = {
    port = { arg = "N", int = true, doc = "the log port (default: read from DIR/logs/kiwi.port)",
      check = function(v) return v > 0 and v < 65536, "must be 1..65535" end },
    level = { arg = "L", doc = "lowest level shown: debug, info, warn, error (default debug)",
      check = function(v)
        return require("kiwi.log").LEVELS[v] ~= nil, "must be debug, info, warn or error"
      end },
    data = { arg = "DIR", doc = "the data directory whose kiwi.port to read (default ./data)" },
    raw = { doc = "print the JSON lines as they come" },
    count = { arg = "N", int = true, doc = "leave after N lines",
      check = function(v) return v > 0, "must be positive" end },
  },
  run = function(opts)
    return require("kiwi.log").tail({ port = opts.port, data = opts.data, level = opts.level,
      raw = opts.raw, count = opts.count, out = opts.out, err = opts.err })
  end,
})

local function bench_module()
  local ok, mod = pcall(require, "kiwi.bench")
  if not ok then
    return nil, "kiwi.bench: " .. tostring(mod):match("^[^\n]*"):gsub(":$", "")
  end
  if type(mod) ~= "table" or type(mod.run) ~= "function" then
    return nil, "kiwi.bench has no run function"
  end
  return mod
end

M.register({
  name = "bench",
  summary = "benchmark the engine from Lua",
  -- no common flags: the bench opens fresh dbs in a temporary directory (not --data/--config);
  -- its --mode (default prod) comes with the module's flags
  available = function()
    local mod, why = bench_module()
    if not mod then
      return false, why
    end
    -- flags the bench module declares (cli_flags: name -> { arg, doc, int }) join the entry
    if type(mod.cli_flags) == "table" then
      M.commands.bench.flags = mod.cli_flags
    end
    return true
  end,
  run = function(opts)
    local mod = bench_module()
    local ok, res, msg = pcall(mod.run, opts)
    if not ok then
      opts.err:write("kiwi bench: ", tostring(res), "\n")
      return 1
    end
    if math.type(res) == "integer" then
      return res
    end
    if res == nil and msg ~= nil or res == false then
      opts.err:write("kiwi bench: ", tostring(msg), "\n")
      return 1
    end
    return 0
  end,
})

M.register({
  name = "check",
  summary = "verify every checksum of every file in a data directory",
  args = { "DIR" },
  help = "Reads the WALs, manifests, SSTables (every block), CURRENT and config.json without\n"
    .. "opening the db, and reports each file as ok, damaged (with offsets) or with a torn tail.\n"
    .. "Exit status 1 when anything is damaged.",
  run = function(opts)
    return require("kiwi.check").run({ dir = opts.dir, out = opts.out, err = opts.err })
  end,
})

M.register({
  name = "version",
  summary = "print the kiwi version",
  run = function(opts)
    opts.out:write("kiwi ", require("kiwi").version, "\n")
    return 0
  end,
})

return M
