-- Take a slot for a job of one agent, if its limits and its tenant's allow it. Atomic in
-- Redis, so the limits hold across every worker and host.
-- KEYS[1]: zset of the agent's running jobs, scored by lease expiry (ms)
-- KEYS[2]: zset of the agent's recent starts, scored by start time (ms)
-- KEYS[3]: zset of the tenant's running jobs, scored by lease expiry (ms)
-- KEYS[4]: the tenant's "parked" flag: set when a job waits for the tenant's cap
-- KEYS[5]: the agent's tenant id (read by release.lua)
-- ARGV: job id, lease (ms), max concurrent jobs, starts allowed per period, period (ms),
--       the tenant's cap (0: none), the tenant id
-- Returns {1, running} when taken; {0, -1} when at the agent's concurrency limit;
-- {0, -2} at the tenant's cap; {0, ms} when the rate limit allows the next start in ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local job, lease = ARGV[1], tonumber(ARGV[2])
local max_running, rate, period = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local cap = tonumber(ARGV[6])

local function take()
  redis.call('ZADD', KEYS[1], now + lease, job)
  redis.call('PEXPIRE', KEYS[1], lease * 2)
  if cap > 0 then
    redis.call('ZADD', KEYS[3], now + lease, job)
    redis.call('PEXPIRE', KEYS[3], lease * 2)
    redis.call('SET', KEYS[5], ARGV[7], 'PX', lease * 2)
  end
  return {1, redis.call('ZCARD', KEYS[1])}
end

-- Slots whose lease ran out belong to dead workers.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], job) then
  return take()
end
if redis.call('ZCARD', KEYS[1]) >= max_running then
  return {0, -1}
end
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= cap then
    redis.call('SET', KEYS[4], '1', 'PX', lease * 4)
    return {0, -2}
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - period)
if redis.call('ZCARD', KEYS[2]) >= rate then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {0, math.max(1, tonumber(oldest[2]) + period - now)}
end
redis.call('ZADD', KEYS[2], now, job .. ':' .. now)
redis.call('PEXPIRE', KEYS[2], period * 2)
return take()
