-- Reads /etc/passwd without any fs grant.
return fs.read("/etc/passwd")
