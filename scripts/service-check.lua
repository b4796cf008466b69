-- service-check.lua: runs an allowlisted status command for each service
-- and reports which are up (exit code 0).  The command is named in the
-- policy, for example:
--     command is-active args=1 /usr/bin/systemctl is-active
-- Arguments (signed with the job: --arg NAME=VALUE):
--   services  the services to check, separated by spaces or commas
--             (default "ssh cron", both present on a Debian 12 server)
--   command   the policy's command name (default "is-active")
-- Grants needed: --policy FILE --exec is-active (exec.run).
--   moonwire run --policy /etc/moonwire/policy --exec is-active \
--     --arg services="nginx ssh" scripts/service-check.lua
local COMMAND = args.command or "is-active"
local SERVICES = {}
for name in (args.services or "ssh cron"):gmatch("[^%s,]+") do
  SERVICES[#SERVICES + 1] = name
end

local report, down = {}, 0
for _, name in ipairs(SERVICES) do
  local r = exec.run(COMMAND, { name })
  local state = (r.stdout or ""):match("^%s*(.-)%s*$")
  local up = r.code == 0
  if not up then down = down + 1 end
  report[#report + 1] = { service = name, code = r.code, signal = r.signal,
                          timed_out = r.timed_out, state = state, up = up }
  print(string.format("%-20s %-10s exit %s%s", name, up and "up" or "DOWN",
    tostring(r.code or ("signal " .. tostring(r.signal))), r.timed_out and " (timed out)" or ""))
end
return { services = report, down = down }
