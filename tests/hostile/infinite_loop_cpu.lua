-- An infinite loop stopped by CPU time rather than instructions.
local x = 0
while true do x = x + 1 end
