-- Asks string.rep for a 1 GB string (large but below Lua own size check).
local s = string.rep("x", 1e9)
return #s
