-- Tries to produce bytecode with string.dump.
return string.dump(function() return 1 end)
