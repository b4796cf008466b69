-- Loops inside a coroutine (hooks are per thread).
local co = coroutine.wrap(function() while true do end end)
co()
