-- wrk script: cycle through pre-signed Sqreen webhook bodies ("signature<TAB>body" lines).
local sigs, bodies = {}, {}
for line in io.lines(os.getenv("BENCH_BODIES")) do
  local tab = line:find("\t", 1, true)
  sigs[#sigs + 1] = line:sub(1, tab - 1)
  bodies[#bodies + 1] = line:sub(tab + 1)
end
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/webhooks/sqreen",
    { ["Content-Type"] = "application/json", ["X-Sqreen-Integrity"] = sigs[i] }, bodies[i])
end
