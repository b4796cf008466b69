-- Tries to set a new metatable on strings.
setmetatable("", { __index = function() return "pwned" end })
return ("x").anything
