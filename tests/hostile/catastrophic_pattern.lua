-- A pattern with catastrophic backtracking: all the time is spent in C (str_find).
return string.find(("a"):rep(50000), ".-.-.-.-b")
