-- Allowlisted commands that try what the commands' seccomp filter takes
-- away: a user namespace (unshare -U) and ptrace (PTRACE_TRACEME).
local u = exec.run("userns")
local t = exec.run("traceme")
return u.code, u.stderr, t.stdout
