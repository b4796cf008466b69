-- Tries to remove the instruction hook through the debug library.
debug.sethook()
while true do end
