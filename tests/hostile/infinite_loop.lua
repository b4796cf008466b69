-- The plain infinite loop.
while true do end
