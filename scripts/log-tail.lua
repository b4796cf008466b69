-- log-tail.lua: the last LINES lines of a log file, printed and returned,
-- with a count of lines that look like errors.
-- Grants needed: --read on a directory that contains LOG (fs.tail, fs.stat).
--   moonwire run --read /var/log scripts/log-tail.lua
local LOG = "/var/log/syslog" -- edit: the log to read (absolute path under a --read grant)
local LINES = 20              -- edit: how many lines

local st = fs.stat(LOG)
local text = fs.tail(LOG, LINES)
local lines, errors = {}, 0
for line in text:gmatch("[^\n]+") do
  lines[#lines + 1] = line
  if line:lower():find("error", 1, true) then errors = errors + 1 end
end
print(string.format("%s (%d bytes), last %d lines, %d with 'error':", LOG, st.size, #lines, errors))
for _, l in ipairs(lines) do print(l) end
return { path = LOG, size = st.size, lines = lines, errors = errors }
