-- Reads a hard link inside the grant whose other name is outside it.
return fs.read("@G@/hard_secret")
