-- Passes more extra arguments than the command allows.
return exec.run("echo", { "a", "b", "c", "d" })
