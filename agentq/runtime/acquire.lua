-- Take a slot for a job of one agent, if both of its limits allow it. Atomic in Redis, so
-- the limits hold across every worker and host.
-- KEYS[1]: zset of the agent's running jobs, scored by lease expiry (ms)
-- KEYS[2]: zset of the agent's recent starts, scored by start time (ms)
-- ARGV: job id, lease (ms), max concurrent jobs, starts allowed per period, period (ms)
-- Returns {1, running} when taken; {0, -1} when at the concurrency limit;
-- {0, ms} when the rate limit allows the next start in ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local job, lease = ARGV[1], tonumber(ARGV[2])
local max_running, rate, period = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

-- Slots whose lease ran out belong to dead workers.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], job) then
  redis.call('ZADD', KEYS[1], now + lease, job)
  redis.call('PEXPIRE', KEYS[1], lease * 2)
  return {1, redis.call('ZCARD', KEYS[1])}
end
if redis.call('ZCARD', KEYS[1]) >= max_running then
  return {0, -1}
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - period)
if redis.call('ZCARD', KEYS[2]) >= rate then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {0, math.max(1, tonumber(oldest[2]) + period - now)}
end
redis.call('ZADD', KEYS[1], now + lease, job)
redis.call('ZADD', KEYS[2], now, job .. ':' .. now)
redis.call('PEXPIRE', KEYS[1], lease * 2)
redis.call('PEXPIRE', KEYS[2], period * 2)
return {1, redis.call('ZCARD', KEYS[1])}
