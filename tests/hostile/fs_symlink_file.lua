-- Reads a symlink inside the grant that points to /etc/passwd.
return fs.read("@G@/passwd_link")
