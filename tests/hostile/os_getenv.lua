-- Tries to read the environment.
return os.getenv("HOME"), os.getenv("PATH")
