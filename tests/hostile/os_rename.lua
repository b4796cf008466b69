-- Tries to move a file.
return os.rename("@O@/secret", "@O@/moved")
