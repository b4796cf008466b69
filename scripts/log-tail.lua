-- log-tail.lua: the last lines of a log file, printed and returned, with a
-- count of lines that look like errors.
-- Arguments (signed with the job: --arg NAME=VALUE):
--   path   the log to read, an absolute path under a --read grant
--          (default /var/log/dpkg.log, which every Debian 12 system has;
--          /var/log/syslog exists only where rsyslog is installed)
--   lines  how many lines, 1..10000 (default 20)
-- Grants needed: --read on a directory that contains the log (fs.tail, fs.stat).
--   moonwire run --read /var/log --arg path=/var/log/apt/history.log scripts/log-tail.lua
local LOG = args.path or "/var/log/dpkg.log"
local LINES = math.tointeger(tonumber(args.lines or "20"))
if not LINES or LINES < 1 or LINES > 10000 then
  error("argument lines must be a whole number from 1 to 10000, not " .. tostring(args.lines))
end

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
