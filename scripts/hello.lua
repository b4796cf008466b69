-- hello.lua: the smallest useful program -- prints a greeting with the
-- sandbox's clock and returns a value.  Grants needed: none.
--   moonwire run scripts/hello.lua
local name = "moonwire"
print(string.format("hello from %s at %s", name, os.date("!%Y-%m-%dT%H:%M:%SZ")))
return "hello, " .. name
