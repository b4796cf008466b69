-- Tries to load a C module / Lua module with require.
local m = require("io")
return m.open("@O@/secret"):read("a")
