-- Sleeps (within the grant) past the wall-clock limit.
sleep(5)
return "slept"
