-- Calls a full collection forever (work inside C, outside the VM loop).
local t = {}
for i = 1, 1000 do t[i] = { i } end
while true do collectgarbage("collect") end
