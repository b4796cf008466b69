-- print() of an object whose __tostring returns a huge string.
print(setmetatable({}, { __tostring = function() return ("z"):rep(4e6) end }))
