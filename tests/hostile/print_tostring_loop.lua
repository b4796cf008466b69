-- print() of an object whose __tostring never returns.
print(setmetatable({}, { __tostring = function() while true do end end }))
