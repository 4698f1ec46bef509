-- vin-gateway suspicious-usage limiter: ONE round trip decides a VIN request.
--
-- Every key is hash-tagged with the account ({acct}) so the script runs on Redis Cluster; every
-- key gets a TTL; time is the Redis server's (TIME). No clear VIN ever reaches Redis: the
-- gateway passes keyed pseudonyms (HMAC) of the VIN and of its serial-less prefix, and the
-- serial number's numeric tail (a fragment, meaningless without the prefix key).
--
-- KEYS
--  1 ban        string "policy" while blocked (TTL = block length)
--  2 strikes    counter of blocks (escalation memory)
--  3 jti        the attestation's jti digest (SET NX; unused in signal mode)
--  4 bucket     hash {t, ts}: per-account flood bucket
--  5 kbucket    hash {t, ts}: per-API-key flood bucket (same key as 4 when no API key)
--  6 score      counter: weighted outcome signals (guessing score), fixed window
--  7 vins       zset: VIN pseudonym -> last seen (ms); distinct VINs in a rolling window
--  8 seq        hash: prefix pseudonym -> "serial:run"; sequential enumeration
--  9 origin     hash {rid, since}: the Redis process (run_id) this account's records were
--               checked against, and since when that process has held them (epoch s)
-- 10 grant      counter: queries admitted under one owner's grant (basis owner_granted), named
--               by a keyed pseudonym of the grant id, in the grantee's slot (same key as 1 when
--               the query has no grant: never touched then)
--
-- ARGV
--  1 mode                "admit" | "signal" | "peek"
--  2 jti ttl s           (admit) replay-cache lifetime, 0 = no jti
--  3 cost                tokens this request takes
--  4 capacity            flood burst
--  5 refill / s          flood refill
--  6 signal weight       points added to the score now (signal mode; piggybacked misses in admit)
--  7 score window s
--  8 score threshold
--  9 vin pseudonym       "" = none
-- 10 distinct window s
-- 11 distinct max
-- 12 prefix pseudonym    "" = none
-- 13 serial              numeric tail of the serial, -1 = none
-- 14 seq max step        |serial - last| in 1..step counts as a step of a walk
-- 15 seq threshold       steps in a walk that make a scraper
-- 16 seq window s
-- 17 first block s
-- 18 max block s
-- 19 strikes memory s
-- 20 shadow policies     string of policy initials in shadow mode: f(lood) g(uessing) d(istinct) s(equential)
-- 21 allow-listed        "1" = exempt from suspicious-usage policies (never from replay or flood)
-- 22 replay weight       points a replayed attestation (or an exhausted grant) adds to the score
-- 23 iat                 (admit) the attestation's iat, 0 = no attestation (no origin check)
-- 24 iat leeway s        how far after its use an accepted attestation's iat may lie (clock skew)
-- 25 believed run_id     the Redis process the gateway last saw answer on this connection, "" = unknown
-- 26 fallback run_id     when INFO is not available (the embedded stand-in): the store's id
-- 27 fallback since      ... and since when it holds the records (epoch s; "" = now)
-- 28 origin ttl s        how long an origin record is kept (it is recomputed identically)
-- 29 grant mode          "" = no grant; "count" = refuse when used up, else count this query if
--                        admitted; "check" = refuse when used up, count nothing (issuance)
-- 30 grant max uses      0 = no limit (the counter still counts)
-- 31 grant ttl s         the counter's lifetime: until the grant's valid_until plus a day
--
-- Returns {verdict, policy, retry_after, remaining, reset, score, distinct, run, shadow_hits,
--          origin_run_id (after the origin check)}
--   verdict: ok | blocked (a running block) | blocked_now (this request started it) | replayed
--            | window_lost (issued before the replay records were lost) | grant_exhausted
--            (the grant's max uses were admitted already) | limited
--
-- Replay records lost with Redis's data (a restart without persistence, or from a snapshot
-- older than the last writes): every replay record of an account lives in the same slot as its
-- origin record, so the check runs on the shard that holds them (Redis Cluster included). An
-- origin record that is missing, or that names another Redis process than the one running,
-- means the records are complete only since this process started: an attestation whose iat is
-- before that second (plus the iat leeway) may have been accepted before and is refused
-- (window_lost) for the rest of its life. Which process runs is read from INFO (run_id,
-- uptime) only when the gateway's belief and the record disagree: on a new connection, at
-- most every few seconds per worker, and for an account's first attestation after a restart.

local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now_ms = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode = ARGV[1]
local shadow = ARGV[20]
local allowed = ARGV[21] == '1'

local function in_shadow(p) return string.find(shadow, p, 1, true) ~= nil end

-- flood bucket state after refill (not yet written)
local capacity = tonumber(ARGV[4])
local rate = tonumber(ARGV[5])
local function refill(key)
  local st = redis.call('HMGET', key, 't', 'ts')
  local tokens = tonumber(st[1]) or capacity
  local ts = tonumber(st[2]) or now_ms
  return math.min(capacity, tokens + math.max(0, now_ms - ts) * rate / 1000)
end
local a_tokens = refill(KEYS[4])
local k_tokens = (KEYS[5] ~= KEYS[4]) and refill(KEYS[5]) or a_tokens
local function remaining() return math.floor(math.max(0, math.min(a_tokens, k_tokens))) end
local function reset() return math.ceil((capacity - math.min(a_tokens, k_tokens)) / rate) end

local score = tonumber(redis.call('GET', KEYS[6]) or '0')
local distinct = 0
local run = 0
local shadow_hits = ''

local ban_ttl = redis.call('TTL', KEYS[1])
if ban_ttl > 0 then
  local policy = redis.call('GET', KEYS[1]) or 'block'
  return {'blocked', policy, ban_ttl, remaining(), reset(), score, 0, 0, ''}
end
if mode == 'peek' then
  return {'ok', '', 0, remaining(), reset(), score, 0, 0, ''}
end

-- take tokens from both buckets (never below zero) and write them back
local function spend(cost)
  a_tokens = math.max(0, a_tokens - cost)
  k_tokens = math.max(0, k_tokens - cost)
  local ttl = math.ceil(capacity / rate) + 1
  redis.call('HSET', KEYS[4], 't', tostring(a_tokens), 'ts', now_ms)
  redis.call('EXPIRE', KEYS[4], ttl)
  if KEYS[5] ~= KEYS[4] then
    redis.call('HSET', KEYS[5], 't', tostring(k_tokens), 'ts', now_ms)
    redis.call('EXPIRE', KEYS[5], ttl)
  end
end

local function block(policy)
  local strikes = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[19]))
  local secs = math.floor(math.min(tonumber(ARGV[17]) * 2 ^ (strikes - 1), tonumber(ARGV[18])))
  redis.call('SET', KEYS[1], policy, 'EX', secs)
  redis.call('DEL', KEYS[6], KEYS[8])
  return secs
end

-- guessing score: fixed window counter
local function add_score(weight)
  if weight <= 0 or allowed then return false end
  score = redis.call('INCRBY', KEYS[6], weight)
  if score == weight then redis.call('EXPIRE', KEYS[6], tonumber(ARGV[7])) end
  if score >= tonumber(ARGV[8]) then
    if in_shadow('g') then shadow_hits = shadow_hits .. 'g' return false end
    return true
  end
  return false
end

if mode == 'signal' then
  -- a refusal costs its tokens too: refused requests cannot be sent for free
  spend(tonumber(ARGV[3]))
  if add_score(tonumber(ARGV[6])) then
    return {'blocked_now', 'guessing', block('guessing'), remaining(), reset(), score, 0, 0, shadow_hits}
  end
  return {'ok', '', 0, remaining(), reset(), score, 0, 0, shadow_hits}
end

-- the Redis process answering, and since when it holds this account's records: from INFO
-- (run_id; the second it started: its cached clock's second minus its uptime, both whole
-- seconds of the same clock, is exactly its start time's second); without INFO (the embedded
-- stand-in has none; an ACL may deny it) the gateway's fallback id and time, else the second
-- before now
local function running_process()
  local info = redis.pcall('INFO', 'server')
  if type(info) == 'string' then
    local rid = string.match(info, 'run_id:(%x+)')
    local up = tonumber(string.match(info, 'uptime_in_seconds:(%d+)'))
    local usec = tonumber(string.match(info, 'server_time_usec:(%d+)'))
    if rid and up then
      local server_s = usec and math.floor(usec / 1000000) or now_s
      return rid, server_s - up
    end
  end
  return ARGV[26], tonumber(ARGV[27]) or now_s - 1
end

local origin_rid = ''
local function reply(r)
  r[10] = origin_rid
  return r
end

-- an admitted query (verdict ok) is one use of its grant, always counted
local grant_mode = ARGV[29]
local function admitted(r)
  if grant_mode == 'count' then
    redis.call('INCR', KEYS[10])
    redis.call('EXPIRE', KEYS[10], math.max(1, tonumber(ARGV[31])))
  end
  return reply(r)
end

local jti_ttl = tonumber(ARGV[2])
local iat = tonumber(ARGV[23]) or 0

-- admit: first, were this account's replay records lost since the attestation was issued?
if jti_ttl > 0 and iat > 0 then
  local origin = redis.call('HMGET', KEYS[9], 'rid', 'since')
  local rid, since = origin[1], tonumber(origin[2])
  if not rid or not since or rid ~= ARGV[25] then
    local running, started = running_process()
    if rid ~= running or not since then
      since = started
      redis.call('HSET', KEYS[9], 'rid', running, 'since', since)
      redis.call('EXPIRE', KEYS[9], tonumber(ARGV[28]))
    end
    rid = running
  end
  origin_rid = rid
  local accept_from = since + tonumber(ARGV[24])
  if iat < accept_from then
    -- not a suspicious-usage signal (honest clients meet it after every such restart), but it
    -- costs its tokens like any refusal
    spend(tonumber(ARGV[3]))
    return reply({'window_lost', 'replay', accept_from - now_s, remaining(), reset(), score, 0, 0, ''})
  end
end

-- then replay (a replay is refused whatever the quota says, and is itself a signal)
if jti_ttl > 0 then
  if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', jti_ttl) then
    if add_score(tonumber(ARGV[22])) then
      return reply({'blocked_now', 'guessing', block('guessing'), remaining(), reset(), score, 0, 0, shadow_hits})
    end
    return reply({'replayed', 'replay', 0, remaining(), reset(), score, 0, 0, shadow_hits})
  end
end

-- then the grant's uses: refused, uncounted, once max uses queries were admitted under it. A
-- refused attestation like the grant step's others: a signal, and it spends its tokens
local grant_max = tonumber(ARGV[30]) or 0
if grant_mode ~= '' and grant_max > 0 then
  if tonumber(redis.call('GET', KEYS[10]) or '0') >= grant_max then
    spend(tonumber(ARGV[3]))
    if add_score(tonumber(ARGV[22])) then
      return reply({'blocked_now', 'guessing', block('guessing'), remaining(), reset(), score, 0, 0, shadow_hits})
    end
    return reply({'grant_exhausted', 'grant', 0, remaining(), reset(), score, 0, 0, shadow_hits})
  end
end

-- flood: per account and per API key, weighted by endpoint cost
local cost = tonumber(ARGV[3])
if math.min(a_tokens, k_tokens) < cost and not in_shadow('f') then
  local retry = math.ceil((cost - math.min(a_tokens, k_tokens)) / rate)
  return reply({'limited', 'flood', retry, remaining(), reset(), score, 0, 0, shadow_hits})
end
if math.min(a_tokens, k_tokens) < cost then shadow_hits = shadow_hits .. 'f' end
spend(cost)

if allowed then
  return admitted({'ok', '', 0, remaining(), reset(), score, 0, 0, ''})
end

-- piggybacked outcome signals (catalogue misses noted after earlier requests)
if add_score(tonumber(ARGV[6])) then
  return reply({'blocked_now', 'guessing', block('guessing'), remaining(), reset(), score, 0, 0, shadow_hits})
end

-- distinct VINs in a rolling window
if ARGV[9] ~= '' then
  local window_ms = tonumber(ARGV[10]) * 1000
  redis.call('ZADD', KEYS[7], now_ms, ARGV[9])
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now_ms - window_ms)
  redis.call('PEXPIRE', KEYS[7], window_ms)
  distinct = redis.call('ZCARD', KEYS[7])
  if distinct > tonumber(ARGV[11]) then
    if in_shadow('d') then
      shadow_hits = shadow_hits .. 'd'
    else
      redis.call('DEL', KEYS[7])
      return reply({'blocked_now', 'distinct_vins', block('distinct_vins'), remaining(), reset(),
                    score, distinct, 0, shadow_hits})
    end
  end
end

-- sequential enumeration: same WMI+VDS+year+plant, serial walking in small steps
local serial = tonumber(ARGV[13])
if ARGV[12] ~= '' and serial >= 0 then
  local prev = redis.call('HGET', KEYS[8], ARGV[12])
  if prev then
    local sep = string.find(prev, ':', 1, true)
    local last = tonumber(string.sub(prev, 1, sep - 1))
    run = tonumber(string.sub(prev, sep + 1))
    local step = math.abs(serial - last)
    if step >= 1 and step <= tonumber(ARGV[14]) then
      run = run + 1
    elseif step > 0 then
      run = math.max(0, run - 1)
    end
  end
  redis.call('HSET', KEYS[8], ARGV[12], serial .. ':' .. run)
  redis.call('EXPIRE', KEYS[8], tonumber(ARGV[16]))
  if redis.call('HLEN', KEYS[8]) > 2000 then redis.call('DEL', KEYS[8]) end
  if run >= tonumber(ARGV[15]) then
    if in_shadow('s') then
      shadow_hits = shadow_hits .. 's'
    else
      return reply({'blocked_now', 'sequential', block('sequential'), remaining(), reset(),
                    score, distinct, run, shadow_hits})
    end
  end
end

return admitted({'ok', '', 0, remaining(), reset(), score, distinct, run, shadow_hits})
