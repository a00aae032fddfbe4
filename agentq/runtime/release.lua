-- Give back a job's slot: the agent's, and its tenant's when the tenant has a cap.
-- KEYS[1]: zset of the agent's running jobs; KEYS[2]: the agent's tenant id (if capped)
-- ARGV: job id, the key prefix of tenants ("<prefix>:tenant:")
-- Returns the tenant id when jobs wait for the tenant's cap (wake them), else false.
redis.call('ZREM', KEYS[1], ARGV[1])
local tenant = redis.call('GET', KEYS[2])
if not tenant then
  return false
end
redis.call('ZREM', ARGV[2] .. tenant .. ':running', ARGV[1])
if redis.call('EXISTS', ARGV[2] .. tenant .. ':parked') == 1 then
  return tenant
end
return false
