-- Unbounded recursion inside pcall, hoping to catch the failure and go on.
local function f(n) return 1 + f(n + 1) end
local ok, err = pcall(f, 1)
return "survived", ok, err
