-- Makes every global lookup loop through _G metatable.
setmetatable(_G, { __index = function() while true do end end })
return undefined_name
