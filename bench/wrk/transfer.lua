-- POST /api/v1/transfers as users (JWT): a random user sends 0.01 USD from their wallet to another
-- random user's wallet. With a share > 0 (third argument), that share of the requests is sent by
-- the busy customer instead (its token, one of its wallets at random). See common.lua.
local dir = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

common.install(function(data, key, share)
  local users = data.users
  local n = #users
  local i = math.random(n)
  local token, source = users[i].token, users[i].wallet
  if share > 0 and math.random() < share then
    token = data.busy.token
    source = data.busy.wallets[math.random(#data.busy.wallets)]
  end
  local destination = users[common.other(n, i)].wallet
  local body = string.format(
    '{"source_wallet_id": %d, "destination_wallet_id": %d, "amount": "0.01", "currency": "USD"}', source, destination)
  return wrk.format("POST", "/api/v1/transfers", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = key,
  }, body)
end)
