-- Doubles a string by concatenation in a loop.
local s = "xxxxxxxxxxxxxxxx"
while true do s = s .. s end
