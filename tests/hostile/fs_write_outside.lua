-- Writes outside the write grant.
return fs.write("@O@/pwned_write", "pwned")
