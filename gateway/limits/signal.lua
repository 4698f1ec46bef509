-- Record a suspicious-usage signal (a refusal) for an account; block when the score crosses
-- the threshold, for an escalating, capped time. Keys hash-tagged per account, all with TTLs.
--
-- KEYS[1] ban      KEYS[2] score (counter over a window)      KEYS[3] strikes (escalation)
-- ARGV[1] weight   ARGV[2] window seconds   ARGV[3] threshold
-- ARGV[4] first block seconds   ARGV[5] max block seconds   ARGV[6] strikes memory seconds
-- ARGV[7] shadow (1 = score but never block)
-- Returns {verdict ("ok" | "blocked" | "shadow_blocked"), block seconds, score}

local weight = tonumber(ARGV[1])
local score = redis.call('INCRBY', KEYS[2], weight)
if score == weight then
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
end
if score < tonumber(ARGV[3]) then
  return {'ok', 0, score}
end
if ARGV[7] == '1' then
  return {'shadow_blocked', 0, score}
end
local strikes = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[6]))
local block = math.min(tonumber(ARGV[4]) * 2 ^ (strikes - 1), tonumber(ARGV[5]))
block = math.floor(block)
redis.call('SET', KEYS[1], '1', 'EX', block)
redis.call('DEL', KEYS[2])
return {'blocked', block, score}
