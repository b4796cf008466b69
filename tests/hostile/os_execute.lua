-- Tries to run a shell command through os.execute.
return os.execute("touch @O@/pwned_os_execute")
