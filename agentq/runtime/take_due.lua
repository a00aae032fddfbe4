-- Take the debounce windows that are due: the scheduler loop's one round trip.
-- KEYS[1]: zset of armed windows, conversation id scored by due time (ms since epoch)
-- ARGV: now (ms, the caller's clock: the due times were computed on it too), at most how many
-- Returns {taken ids (removed from the set, oldest due first), the next due time or false}.
-- Two loops never take the same window: the script runs atomically.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {due, nxt[2] or false}
