-- Would read /proc with /proc itself granted (the CLI must refuse the grant).
return fs.read("/proc/self/environ")
