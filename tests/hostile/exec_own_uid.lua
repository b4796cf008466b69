-- With --command-uids the command runs as a uid of that range, not nobody,
-- and still under the commands' filter (it cannot trace).
local u = exec.run("uid")
local t = exec.run("traceme")
return u.stdout, t.stdout
