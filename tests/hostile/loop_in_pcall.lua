-- Hides the infinite loop inside pcall, hoping the limit is a catchable error.
while true do
  pcall(function() while true do end end)
end
