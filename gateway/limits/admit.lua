-- One round trip decides a VIN request: ban check, attestation replay, flood bucket.
-- Every key is hash-tagged with the account ({acct}) so the script runs on Redis Cluster,
-- and every key gets a TTL. Time is the Redis server's.
--
-- KEYS[1] ban        string: epoch second the block ends (TTL = block length)
-- KEYS[2] jti        string: set once per attestation jti digest ("" slot unused when no jti)
-- KEYS[3] bucket     hash {t = tokens, ts = last refill (ms)}
-- ARGV[1] jti ttl seconds (0 = no replay check)
-- ARGV[2] cost (tokens this request takes)
-- ARGV[3] bucket capacity (burst)
-- ARGV[4] refill rate, tokens per second
-- ARGV[5] shadow (1 = count but never refuse on the flood policy)
--
-- Returns {verdict, retry_after_s, remaining, reset_s}
-- verdict: "ok" | "blocked" | "replayed" | "limited"

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local ban_ttl = redis.call('TTL', KEYS[1])
if ban_ttl and ban_ttl > 0 then
  return {'blocked', ban_ttl, 0, ban_ttl}
end

local jti_ttl = tonumber(ARGV[1])
if jti_ttl > 0 then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', jti_ttl) then
    return {'replayed', 0, 0, 0}
  end
end

local cost = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local rate = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[3], 't', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now_ms
tokens = math.min(capacity, tokens + (now_ms - ts) * rate / 1000)
local verdict = 'ok'
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
elseif ARGV[5] == '1' then
  verdict = 'ok'
else
  verdict = 'limited'
  retry = math.ceil((cost - tokens) / rate)
end
redis.call('HSET', KEYS[3], 't', tostring(tokens), 'ts', now_ms)
redis.call('EXPIRE', KEYS[3], math.ceil(capacity / rate) + 1)
local reset = math.ceil((capacity - tokens) / rate)
return {verdict, retry, math.floor(math.max(tokens, 0)), reset}
