-- Tries to create a temporary file.
return os.tmpname()
