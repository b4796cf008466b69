-- Tries to load a precompiled (binary) chunk: bytecode can break the VM.
local f, err = load("\27Lua\84\0\25\147\13\10\26\10\4\8\8\120\86\0\0\0\0\0\0\0\0\0\0\0\40\119\64\1")
if f == nil then error(err, 0) end
return f()
