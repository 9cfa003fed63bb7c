-- Shared by the wrk scripts of bench/api_bench.py (transfer.lua, deposit.lua, org_transaction.lua).
--
-- Arguments (after `--` on wrk's command line):
--   1. a Lua data file written by api_bench.py: return {users = {{token=, wallet=}, ...},
--      busy = {token=, wallets={...}}, org = {key=, first=, n=}}
--   2. a nonce unique to the run, so Idempotency-Keys and references never repeat across runs
--   3. (transfer.lua) the share of requests sent by the busy customer, 0..1
--
-- Every request gets a fresh Idempotency-Key (nonce-thread-counter). Every response's status is
-- counted per thread; done() merges the threads and prints ONE line, "APIBENCH {json}", with the
-- request count, duration, wrk's socket errors, latency percentiles (microseconds), statuses and
-- the first body seen for each status that is not 2xx (for diagnosis).
local M = {}

local threads = {}

local function json_string(s)
  s = string.gsub(s, '[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == '\\' then return '\\\\' end
    return string.format('\\u%04x', string.byte(c))
  end)
  return '"' .. s .. '"'
end

function M.install(make_request)
  local next_id = 0

  setup = function(thread)
    next_id = next_id + 1
    thread:set("tid", next_id)
    table.insert(threads, thread)
  end

  init = function(args)
    data = dofile(args[1])
    nonce = args[2]
    share = tonumber(args[3] or "0") or 0
    counter = 0
    statuses = {}
    samples = {}
    math.randomseed(tid * 100003 + os.time())
    for _ = 1, 16 do math.random() end
  end

  request = function()
    counter = counter + 1
    return make_request(data, nonce .. "-" .. tid .. "-" .. counter, share)
  end

  response = function(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    if (status < 200 or status > 299) and samples[status] == nil then
      samples[status] = string.sub(body or "", 1, 300)
    end
  end

  done = function(summary, latency, requests)
    local merged, firsts = {}, {}
    for _, thread in ipairs(threads) do
      local s = thread:get("statuses") or {}
      for status, count in pairs(s) do
        merged[status] = (merged[status] or 0) + count
      end
      local b = thread:get("samples") or {}
      for status, body in pairs(b) do
        if firsts[status] == nil then firsts[status] = body end
      end
    end
    local parts = {}
    for status, count in pairs(merged) do
      table.insert(parts, string.format('"%d": %d', status, count))
    end
    local bodies = {}
    for status, body in pairs(firsts) do
      table.insert(bodies, string.format('"%d": %s', status, json_string(body)))
    end
    local e = summary.errors
    io.write(string.format(
      'APIBENCH {"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
        .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}, "statuses": {%s}, "samples": {%s}}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
      table.concat(parts, ", "), table.concat(bodies, ", ")))
  end
end

-- A random index 1..n different from `other`.
function M.other(n, other)
  local j = math.random(n - 1)
  if j >= other then j = j + 1 end
  return j
end

return M
