-- Runs a command whose main thread exits while another thread runs on:
-- its leader looks like a zombie ('Z') but the process lives.
local r = exec.run("leaderless")
return r.timed_out
