-- wrk script: send pre-built requests round-robin, optionally paced; print JSON at the end.
--
--   wrk -t1 -c32 -d5s -s bench/requests.lua http://127.0.0.1:8080 -- FILE THREADS [RATE]
--
-- FILE is written by bench/common.py (`write_requests`): per request a line
-- "METHOD TARGET HEADER_COUNT BODY_BYTES", that many "Name: value" lines, then the body.
-- Every request is formatted once in init(), so request() is a table lookup: signing and
-- formatting are never part of the measured load. THREADS repeats wrk's -t (a script
-- cannot read it).
--
-- RATE (requests per second, all threads together) paces the load with delay(): each
-- thread keeps a schedule of send times and a connection waits for the next free slot.
-- wrk measures latency from the moment a request is written, so when the server stalls,
-- the sends queued behind it wait unseen (coordinated omission; see bench/README.md).

local ffi = require("ffi")

ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
]]

local CLOCK_MONOTONIC = 1
local clock = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

-- setup() runs in the main script state, once per thread, just before that thread's init().
local threads_set_up = 0

function setup(thread)
  thread:set("thread_index", threads_set_up)
  threads_set_up = threads_set_up + 1
end

-- From here on, per thread: each wrk thread has its own script state.
local requests = {}
local next_index = 1
local interval_ms = nil -- between two sends of this thread, when paced
local started_ms = nil
local sent = 0

local function load(path)
  local file = assert(io.open(path, "rb"))
  while true do
    local line = file:read("*l")
    if not line then
      break
    end
    local method, target, header_count, body_bytes = line:match("^(%S+) (%S+) (%d+) (%d+)$")
    assert(method, "bad request line in " .. path .. ": " .. line)
    local headers = {}
    for _ = 1, tonumber(header_count) do
      local name, value = file:read("*l"):match("^([^:]+): (.*)$")
      headers[name] = value
    end
    local body = nil
    if tonumber(body_bytes) > 0 then
      body = file:read(tonumber(body_bytes))
    end
    table.insert(requests, wrk.format(method, target, headers, body))
  end
  file:close()
  assert(#requests > 0, "no requests in " .. path)
end

local function paced_delay()
  if not started_ms then
    started_ms = now_ms()
  end
  sent = sent + 1
  local wait = started_ms + sent * interval_ms - now_ms()
  if wait < 1 then
    return 0
  end
  return math.floor(wait)
end

function init(args)
  load(args[1])
  local threads = tonumber(args[2])
  -- Threads start at different places in the list, so no two send the same call at once.
  next_index = 1 + math.floor(thread_index * #requests / threads)
  if args[3] then
    interval_ms = 1000 * threads / tonumber(args[3])
    -- wrk asks once, after init(), whether the script has a delay(); without one it sends
    -- the next request as soon as an answer is read, which is what a throughput run wants.
    delay = paced_delay
  end
end

function request()
  local formatted = requests[next_index]
  next_index = next_index % #requests + 1
  return formatted
end

function done(summary, latency, _)
  local errors = summary.errors
  local function ms(us)
    return us / 1000
  end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_s": %.6f, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_ms": {"p50": %.3f, "p90": %.3f, "p99": %.3f, "p999": %.3f, "max": %.3f, '
      .. '"mean": %.3f}}\n',
    summary.requests, summary.duration / 1e6, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)),
    ms(latency:percentile(99.9)), ms(latency.max), ms(latency.mean)
  ))
end
