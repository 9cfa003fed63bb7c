-- POST /api/v1/transactions as an organization (X-API-Key): one transfer operation of 0.01 USD
-- between two random customer wallets of the organization (ids first .. first + n - 1), with a
-- unique reference and a fresh Idempotency-Key. See common.lua.
local dir = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

common.install(function(data, key, share)
  local org = data.org
  local a = math.random(org.n)
  local b = common.other(org.n, a)
  local body = string.format(
    '{"reference": "apibench-%s", "operations": [{"type": "transfer", "source_wallet_id": %d, '
      .. '"destination_wallet_id": %d, "amount": "0.01"}]}', key, org.first + a - 1, org.first + b - 1)
  return wrk.format("POST", "/api/v1/transactions", {
    ["X-API-Key"] = org.key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = key,
  }, body)
end)
