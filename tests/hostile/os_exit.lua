-- Tries to exit the worker with a success status.
os.exit(0)
