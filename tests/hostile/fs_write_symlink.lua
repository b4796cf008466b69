-- Writes through a symlink inside the write grant that points outside.
return fs.write("@G@/write_link", "pwned")
