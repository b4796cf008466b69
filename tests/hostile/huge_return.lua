-- Returns a value far larger than the result limit.
return ("r"):rep(200000)
