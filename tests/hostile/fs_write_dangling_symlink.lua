-- Creates a file outside through a dangling symlink inside the write grant.
return fs.write("@G@/dangling_link", "pwned")
