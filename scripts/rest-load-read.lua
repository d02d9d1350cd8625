-- wrk script: an authenticated GET (the path is wrk's URL). TOKENS holds one access token per
-- couple, separated by spaces; each connection's requests go round the couples.
local tokens = {}
for t in string.gmatch(os.getenv("TOKENS") or "", "%S+") do
  tokens[#tokens + 1] = t
end
local n = 0

function request()
  n = n + 1
  local headers = { ["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1] }
  return wrk.format("GET", nil, headers, nil)
end
