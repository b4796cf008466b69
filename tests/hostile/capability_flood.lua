-- Floods the supervisor with capability calls.
for i = 1, 100000 do pcall(fs.stat, "/nonexistent") end
return "survived"
