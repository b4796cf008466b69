-- Returns a table that contains itself.
local t = { name = "loop" }
t.self = t
return t
