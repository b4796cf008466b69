-- Sleeps longer than granted.
sleep(60)
return "slept"
