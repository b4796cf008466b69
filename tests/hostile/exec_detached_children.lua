-- Runs a command that leaves setsid()-detached children behind and exits.
return exec.run("detach")
