-- Leaves the granted directory with "..".
return fs.read("@G@/../../../etc/passwd")
