-- Builds a long chain of coroutines that close each other.
local co = coroutine.create(function() end)
for i = 1, 1e6 do
  local prev = co
  co = coroutine.create(function() coroutine.close(prev); coroutine.yield() end)
  coroutine.resume(co)
end
while true do end
