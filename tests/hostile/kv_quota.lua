-- Fills the kv store beyond its quota.
local v = ("v"):rep(60000)
for i = 1, 100 do kv.put("k" .. i, v) end
return "stored everything"
