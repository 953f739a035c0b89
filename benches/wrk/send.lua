-- Cross-check of `tidings bench send` with wrk: POST a 200-byte message per request, rotating
-- over the conversations given as arguments, with one user's token.
--
--   wrk -t2 -c64 -d10s -s benches/wrk/send.lua http://127.0.0.1:8787 -- TOKEN CONV1,CONV2,...
--
-- The server must run with --rate-limit 0 (one user sends everything) and TOKEN's user must be
-- a participant of every conversation. Refused answers are counted and printed at the end.

local token, conversations, next_index = nil, {}, 1
local body = '{"content":"' .. string.rep("x", 200) .. '"}'

function init(args)
  token = args[1]
  for id in string.gmatch(args[2], "[^,]+") do
    table.insert(conversations, id)
  end
  next_index = math.random(#conversations)
end

function request()
  local conversation = conversations[next_index]
  next_index = next_index % #conversations + 1
  return wrk.format("POST", "/api/conversations/" .. conversation .. "/messages", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end

function done(summary)
  -- wrk counts answers with a status of 400 or more in errors.status.
  io.write(string.format("4xx/5xx answers: %d, socket errors: %d\n", summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
