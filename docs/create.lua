-- wrk script: POST /create with the seed's order and a unique id per request, so every request
-- is a new order (a repeated id would be a cheap idempotent replay, not real work).
--   wrk -t2 -c16 -d30s -s docs/create.lua http://127.0.0.1:3000/create
-- A run prefix keeps ids unique across runs against the same store.
local prefix = string.format("%x", os.time())
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

function init(args)
  n = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  local id = prefix .. "-" .. tid .. "-" .. n
  return wrk.format(nil, nil, nil, string.format(
    '{"id":"%s","items":[],"payment":{"amount":0,"id":"%s","shipment":{"id":"%s","directions":"home"}}}',
    id, id, id))
end

function done(summary, latency, requests)
  io.write(string.format("p50 %.2f ms, p99 %.2f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
