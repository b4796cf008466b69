-- disk-report.lua: usage of every real filesystem, with a flag on those
-- fuller than THRESHOLD percent.  Returns { filesystems = {...}, flagged = {...} }.
-- Arguments (signed with the job: --arg NAME=VALUE):
--   threshold  percent used above which a filesystem is flagged, 0..100
--              (default 90)
-- Grants needed: --sys (sys.disk).
--   moonwire run --sys --arg threshold=80 scripts/disk-report.lua
local THRESHOLD = tonumber(args.threshold or "90")
if not THRESHOLD or THRESHOLD < 0 or THRESHOLD > 100 then
  error("argument threshold must be a percentage from 0 to 100, not " .. tostring(args.threshold))
end

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
