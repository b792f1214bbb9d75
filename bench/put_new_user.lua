-- wrk script: each request PUTs the content of a user not written before (single writes).
-- Usage: wrk ... -s bench/put_new_user.lua URL -- TOKEN PATH_PREFIX RUN_NAME
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  local token = args[1] or ""
  prefix = args[2] or "/content/"
  run = args[3] or "run"
  sequence = 0
  headers = {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}
end

function request()
  sequence = sequence + 1
  local body = '{"fields":{"message":"Your code for today is SPRING' .. sequence .. '"}}'
  return wrk.format("PUT", prefix .. run .. "-" .. id .. "-" .. sequence, headers, body)
end
