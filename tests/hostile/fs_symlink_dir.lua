-- Reads through a symlinked directory inside the grant that points to /etc.
return fs.read("@G@/etc_link/passwd")
