-- With a grant of "/", reads the supervisor environment through /proc.
return fs.read("/proc/self/environ")
