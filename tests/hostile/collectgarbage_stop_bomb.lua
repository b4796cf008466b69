-- Stops the collector and allocates garbage until memory runs out.
collectgarbage("stop")
local keep = {}
for i = 1, 1e8 do keep[i % 10] = ("x"):rep(1000) .. i end
return "survived"
