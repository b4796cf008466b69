-- Raises an error with a 1 MB message.
error(("e"):rep(1000000))
