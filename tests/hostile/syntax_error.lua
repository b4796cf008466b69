-- Not Lua at all.
return +
