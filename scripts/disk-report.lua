-- disk-report.lua: usage of every real filesystem, with a flag on those
-- fuller than THRESHOLD percent.  Returns { filesystems = {...}, flagged = {...} }.
-- Grants needed: --sys (sys.disk).
--   moonwire run --sys scripts/disk-report.lua
local THRESHOLD = 90 -- percent used above which a filesystem is flagged

local rows, flagged = {}, {}
for _, fs in ipairs(sys.disk()) do
  local used = fs.total - fs.free
  -- Like df: the percentage of what non-root users can use.
  local usable = used + fs.available
  local pct = usable > 0 and math.ceil(used * 100 / usable) or 0
  local row = { mount = fs.mount, type = fs.type, total = fs.total, used = used,
                available = fs.available, percent = pct, full = pct >= THRESHOLD }
  rows[#rows + 1] = row
  if row.full then flagged[#flagged + 1] = fs.mount end
end
table.sort(rows, function(a, b) return a.mount < b.mount end)
for _, r in ipairs(rows) do
  print(string.format("%-30s %-8s %4d%% used of %8.1f GiB%s", r.mount, r.type, r.percent,
    r.total / 2^30, r.full and "   <-- above " .. THRESHOLD .. "%" or ""))
end
if #flagged == 0 then print("all filesystems below " .. THRESHOLD .. "%") end
return { threshold = THRESHOLD, filesystems = rows, flagged = flagged }
