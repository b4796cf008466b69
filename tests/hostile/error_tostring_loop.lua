-- Raises a table whose __tostring loops: host code must never call it.
error(setmetatable({}, { __tostring = function() while true do end end }))
