-- wrk script: POST /api/expenses with a small (under-threshold) expense, so every request is a
-- direct write (201) through a partnership's document actor. TOKENS holds one access token per
-- couple, separated by spaces; requests go round the couples. wrk prints
-- "Non-2xx or 3xx responses: N" when any request failed.
local tokens = {}
for t in string.gmatch(os.getenv("TOKENS") or "", "%S+") do
  tokens[#tokens + 1] = t
end
local n = 0
local body = '{"name":"Coffee","amount":"3.50","category":"dining","frequency":"weekly"}'

function request()
  n = n + 1
  local headers = {
    ["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1],
    ["Content-Type"] = "application/json",
  }
  return wrk.format("POST", nil, headers, body)
end
