-- Returns functions and a coroutine: they must come back as type names only.
local mt = { __tostring = function() while true do end end }
local f = function() end
return print, coroutine.create(f), f
