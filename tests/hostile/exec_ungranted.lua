-- Runs a command that is not granted.
return exec.run("sh", { "-c", "touch @O@/pwned_exec" })
