-- Replaces the shared string metatable __index to hijack string methods.
getmetatable("").__index = { upper = function() return "pwned" end }
return ("x"):upper()
