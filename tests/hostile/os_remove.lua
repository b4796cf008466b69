-- Tries to delete a file.
return os.remove("@O@/secret")
