-- POST /api/v1/deposits as users (JWT): a random user deposits 0.01 USD into their own wallet
-- (every deposit is an Issue from the USD issuance account). See common.lua.
local dir = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

common.install(function(data, key, share)
  local user = data.users[math.random(#data.users)]
  local body = string.format('{"wallet_id": %d, "amount": "0.01", "source": "card"}', user.wallet)
  return wrk.format("POST", "/api/v1/deposits", {
    ["Authorization"] = "Bearer " .. user.token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = key,
  }, body)
end)
