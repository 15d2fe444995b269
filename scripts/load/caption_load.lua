-- wrk script for caption_load.sh: POSTs one image as a raw body to /api/caption and counts
-- the status codes. Arguments after `--`: IMAGE_FILE CONTENT_TYPE.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = args[2]
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + n
    end
  end
  io.write("STATUS")
  for status, n in pairs(totals) do
    io.write(string.format(" %d=%d", status, n))
  end
  io.write("\n")
  local e = summary.errors
  io.write(string.format("ERRORS connect=%d read=%d write=%d timeout=%d\n",
    e.connect, e.read, e.write, e.timeout))
  io.write(string.format("REQUESTS %d in %.2f s\n", summary.requests, summary.duration / 1e6))
  io.write(string.format("LATENCY_MS p50=%.1f p95=%.1f p99=%.1f max=%.1f\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
