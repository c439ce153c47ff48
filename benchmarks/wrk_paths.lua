-- wrk script used by benchmarks/compare.py.
-- Environment:
--   WRK_METHOD  GET (default) or HEAD
--   WRK_PATHS   space-separated request paths, requested in turn (e.g. every page of a paginated listing)
--   WRK_ACCEPT  optional Accept header (manifest media types)
-- At the end it prints one line "JSON {...}" with the counts and latency percentiles (microseconds).

local method = os.getenv("WRK_METHOD") or "GET"
local accept = os.getenv("WRK_ACCEPT")
local paths = {}
for p in string.gmatch(os.getenv("WRK_PATHS") or "/", "%S+") do
  table.insert(paths, p)
end
local headers = {}
if accept and accept ~= "" then
  headers["Accept"] = accept
end
local n = 0

request = function()
  n = n + 1
  return wrk.format(method, paths[(n - 1) % #paths + 1], headers)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests": %d, "duration_us": %d, "bytes": %d, "status_errors": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
