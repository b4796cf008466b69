-- Tries to read a file outside any grant with the io library.
local f = io.open("@O@/secret", "r")
return f:read("a")
