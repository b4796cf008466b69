-- Loops inside the xpcall message handler.
return xpcall(error, function() while true do end end)
