-- Tries to compile a host file with loadfile.
return loadfile("@O@/secret")
