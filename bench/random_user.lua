-- wrk script: GET /data for a random user id, with the API key.
-- Usage: wrk ... -s bench/random_user.lua URL -- API_KEY USERS
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  api_key = args[1] or ""
  users = tonumber(args[2] or "1000000")
  -- Each wrk thread has its own Lua state: seed each one differently.
  math.randomseed(os.time() * 1000 + (id or 0))
end

function request()
  return wrk.format("GET", "/data?user_id=" .. math.random(1, users), {["X-API-Key"] = api_key})
end
