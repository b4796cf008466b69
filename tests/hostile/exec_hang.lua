-- Runs a command that never ends.
return exec.run("hang")
