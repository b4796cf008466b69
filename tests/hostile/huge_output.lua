-- Prints without end.
local line = ("y"):rep(1000)
while true do print(line) end
