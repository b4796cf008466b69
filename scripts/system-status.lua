-- system-status.lua: a one-glance summary of the host (hostname, kernel,
-- uptime, load, memory) printed for people and returned as a table.
-- Grants needed: --sys (sys.info).
--   moonwire run --sys scripts/system-status.lua
local info = sys.info()

local function human(bytes)
  local units = { "B", "KiB", "MiB", "GiB", "TiB" }
  local i = 1
  while bytes >= 1024 and i < #units do bytes = bytes / 1024; i = i + 1 end
  return string.format("%.1f %s", bytes, units[i])
end

local function duration(secs)
  local d, h, m = secs // 86400, secs % 86400 // 3600, secs % 3600 // 60
  return string.format("%dd %02dh %02dm", d, h, m)
end

local mem = info.memory
local used_pct = mem.total > 0 and (mem.total - mem.available) * 100 / mem.total or 0
local summary = {
  hostname = info.hostname,
  kernel = info.kernel,
  machine = info.machine,
  cpus = info.cpus,
  uptime = duration(info.uptime),
  uptime_seconds = info.uptime,
  load = string.format("%.2f %.2f %.2f", info.load[1], info.load[2], info.load[3]),
  memory_total = mem.total,
  memory_available = mem.available,
  memory_used_percent = math.floor(used_pct + 0.5),
}
print(string.format("%s (%s, %s, %d cpus)", summary.hostname, summary.kernel, summary.machine, summary.cpus))
print("uptime: " .. summary.uptime .. "   load: " .. summary.load)
print(string.format("memory: %s available of %s (%d%% used)", human(mem.available), human(mem.total),
  summary.memory_used_percent))
return summary
