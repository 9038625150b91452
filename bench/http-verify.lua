-- http-verify.lua - wrk's side of bench/http.sh (docs/bench.md, "HTTP verification"):
-- every request a GET with "Authorization: Bearer <secret>", cycling through the
-- secrets of a tokenbench tokens file, as `tokenbench http` sends them.
--
--   wrk -t1 -c50 -d5s -s bench/http-verify.lua http://HOST:PORT/v1/verify -- TOKENS_FILE
--
-- The requests are formatted once, in init, so wrk's cost per request is
-- returning a string; no response() callback, so wrk parses no headers beyond
-- its own (statuses other than 2xx and 3xx are counted by wrk itself:
-- "Non-2xx or 3xx responses").
local reqs, n, i = {}, 0, 0

function init(args)
  local path = args[1]
  assert(path, "usage: wrk ... -s http-verify.lua URL -- TOKENS_FILE")
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    if #line > 0 and line:sub(1, 1) ~= "#" then
      n = n + 1
      reqs[n] = wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. line })
    end
  end
  f:close()
  assert(n > 0, "no secrets in " .. path)
end

function request()
  i = i % n + 1
  return reqs[i]
end
