-- Runs a command that forks many long-lived children and waits for them.
return exec.run("bomb")
