-- Returns a table nested 200 levels deep.
local root = {}
local cur = root
for i = 1, 200 do cur[1] = {}; cur = cur[1] end
return root
