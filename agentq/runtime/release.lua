-- Give back a job's slot: the agent's, and its tenant's when the tenant has a cap.
-- KEYS[1]: zset of the agent's running jobs; KEYS[2]: the agent's tenant id (if capped);
-- KEYS[3]: zset of the agent's recent starts (members "<job>:<ms>")
-- ARGV: job id, the key prefix of tenants ("<prefix>:tenant:"), "1" if the start never
-- happened (its claim did not commit): its rate-limit entry, the job's latest, goes too
-- Returns the tenant id when jobs wait for the tenant's cap (wake them), else false.
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[3] == '1' then
  local prefix = ARGV[1] .. ':'
  for _, m in ipairs(redis.call('ZREVRANGE', KEYS[3], 0, -1)) do
    if string.sub(m, 1, #prefix) == prefix then
      redis.call('ZREM', KEYS[3], m)
      break
    end
  end
end
local tenant = redis.call('GET', KEYS[2])
if not tenant then
  return false
end
redis.call('ZREM', ARGV[2] .. tenant .. ':running', ARGV[1])
if redis.call('EXISTS', ARGV[2] .. tenant .. ':parked') == 1 then
  return tenant
end
return false
