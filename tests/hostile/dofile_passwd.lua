-- Tries to execute a host file with dofile.
return dofile("/etc/passwd")
