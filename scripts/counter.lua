-- counter.lua: a persistent counter in the kv store -- each run adds one
-- and returns the new value (and when it was last bumped).
-- Grants needed: --kv (with the same --state directory and --kv-scope
-- across runs).
--   moonwire run --kv --state ~/.local/state/moonwire scripts/counter.lua
-- Arguments (signed with the job: --arg NAME=VALUE):
--   key  the counter's name in the kv store (default "counter")
local KEY = args.key or "counter"

local n = tonumber(kv.get(KEY) or "0") or 0
local last = kv.get(KEY .. ".last")
n = n + 1
kv.put(KEY, tostring(n))
kv.put(KEY .. ".last", tostring(os.time()))
print(string.format("run #%d%s", n, last and (" (previous run at " .. os.date("!%Y-%m-%d %H:%M:%SZ", tonumber(last)) .. ")") or ""))
return n
