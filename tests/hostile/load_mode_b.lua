-- Asks load() for binary mode explicitly.
local f = load("return 1", "=x", "b")
return f()
