"""The Lua scripts: each a single round trip, atomic, on Redis time (`TIME`) only.

    ACQUIRE    reserve a slot in a project's bucket and, when one applies, the credential's global bucket
    LEARN      store what a runner learned: a rate, a hold (Retry-After), a 429 counted
    HEARTBEAT  a runner is alive (or leaving); prune runners not seen for the runner TTL

Registered with `register_script`: redis-py sends `EVALSHA` and, on `NOSCRIPT` (after `SCRIPT FLUSH` or a
restart), loads the script and sends it again, so neither costs an error. Every key a script touches is
in KEYS and under the `{rl}` hash tag (one Cluster slot). Every key it writes gets a TTL (ARGV key_ttl, in
milliseconds), refreshed on each write. Numbers cross the Lua boundary as strings (`%.17g`): Lua numbers
returned as such are truncated to integers by Redis.

Bucket hash fields: `tat` (GCRA's theoretical arrival time, Redis seconds), `iv` (the interval it was
computed with), `cap` (capacity), `hold` (nothing before it), `learned` (the rate runners learned),
`cut_at` (when the learned rate last went down), `t429`/`t429_since` (recent 429s, for `bulkops limits`).
The GCRA is `gcra.LocalGcra`'s, line for line.
"""

from __future__ import annotations

from bulkops.redis.gcra import START_MARGIN

_COMMON = """
local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.17g', x) end
local START_MARGIN = """ + repr(START_MARGIN) + """
"""

#: KEYS: runners, projects, scopes, project hash, project cfg, global hash, global cfg
#: ARGV: runner, project id, scope, key ttl (ms), runner ttl (s), pacing factor,
#:       rate, capacity, global rate ('' when none configured), global capacity,
#:       seed learned project rate (''), seed learned global rate ('')
#: Returns: wait, project rate, lowest configured project rate, live runners configured for the project,
#:          global rate ('' when no global bucket paces), lowest configured global rate ('' when no
#:          live runner configured one), live runners in the scope, learned project rate (''),
#:          learned global rate ('')
ACQUIRE = (
    _COMMON
    + """
local now = now_s()
local runner, ttl = ARGV[1], tonumber(ARGV[4])
local alive_after = now - tonumber(ARGV[5])
local pacing = tonumber(ARGV[6])
redis.call('ZADD', KEYS[1], now, runner)
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('ZADD', KEYS[3], now, ARGV[3])

-- The lowest rate any live runner was configured with (a runner seen within the runner TTL).
local function lowest(cfg, mine)
  if mine ~= nil then redis.call('ZADD', cfg, mine, runner) end
  local members = redis.call('ZRANGE', cfg, 0, -1, 'WITHSCORES')
  local low, n = nil, 0
  for i = 1, #members, 2 do
    local seen = redis.call('ZSCORE', KEYS[1], members[i])
    if seen and tonumber(seen) >= alive_after then
      n = n + 1
      if low == nil then low = tonumber(members[i + 1]) end
    else
      redis.call('ZREM', cfg, members[i])
    end
  end
  if n > 0 then redis.call('PEXPIRE', cfg, ttl) end
  return low, n
end

-- The bucket's rate and the earliest time it allows a request. `rate` nil: nobody configured one and
-- nothing was learned (a credential-wide bucket that only holds): no pacing, only the hold.
local function bucket(key, rate, cap, seed)
  local s = redis.call('HMGET', key, 'tat', 'iv', 'hold', 'learned')
  local learned = tonumber(s[4])
  if learned == nil and seed ~= '' then
    learned = tonumber(seed)
    redis.call('HSET', key, 'learned', seed)
  end
  if learned ~= nil and (rate == nil or learned < rate) then rate = learned end
  local hold = tonumber(s[3]) or 0
  if rate == nil then return {key = key, at = math.max(now, hold)} end
  local iv = 1 / rate
  local tat, old = tonumber(s[1]), tonumber(s[2])
  if tat == nil then
    tat = now
    -- Held before its first request: no burst after the hold either.
    if hold > now then tat = math.max(tat, hold + (cap - 1) * iv) end
  elseif old ~= nil and old ~= iv and tat > now then
    tat = now + (tat - now) * iv / old
  end
  -- Never more than `cap - held` banked (see gcra.held_back): a burst leaves START_MARGIN of slack.
  if cap >= 2 then
    tat = math.max(tat, now + math.min(cap - 1, math.max(1, math.floor(START_MARGIN / iv + 1e-9))) * iv)
  end
  local at = math.max(now, tat - (cap - 1) * iv, hold)
  return {key = key, rate = rate, iv = iv, tat = tat, cap = cap, at = at, learned = learned}
end

local function commit(b, at)
  if b.rate == nil then return end
  redis.call('HSET', b.key, 'tat', fmt(math.max(b.tat, at) + b.iv), 'iv', fmt(b.iv), 'cap', fmt(b.cap))
  redis.call('PEXPIRE', b.key, ttl)
end

local cap = tonumber(ARGV[8])
local low, n = lowest(KEYS[5], tonumber(ARGV[7]))
local p = bucket(KEYS[4], low * pacing, cap, ARGV[11])
local at = p.at
local g, glow = nil, ''
local mine_g = nil
if ARGV[9] ~= '' then mine_g = tonumber(ARGV[9]) end
local low_g = lowest(KEYS[7], mine_g)
if low_g ~= nil or ARGV[12] ~= '' or redis.call('EXISTS', KEYS[6]) == 1 then
  local grate = nil
  if low_g ~= nil then
    grate = low_g * pacing
    glow = fmt(low_g)
  end
  g = bucket(KEYS[6], grate, tonumber(ARGV[10]), ARGV[12])
  if g.at > at then at = g.at end
end
commit(p, at)
if g ~= nil then commit(g, at) end
local runners = redis.call('ZCOUNT', KEYS[1], alive_after, '+inf')
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
local function opt(x) if x == nil then return '' end return fmt(x) end
return {fmt(at - now), fmt(p.rate), fmt(low), n, g and g.rate and fmt(g.rate) or '', glow, runners,
        opt(p.learned), g and opt(g.learned) or ''}
"""
)

#: KEYS: target hash (the project's or the global bucket), project hash (429s are counted there),
#:       projects, scopes
#: ARGV: rate (''), hold seconds (''), throttled ('1'/'0'), key ttl (ms), raise quiet (s),
#:       recent span (s), project id, scope
#: Returns: the learned rate now in the target ('' if none), the hold's end in seconds from now ('0')
LEARN = (
    _COMMON
    + """
local now = now_s()
local t, ttl = KEYS[1], tonumber(ARGV[4])
local s = redis.call('HMGET', t, 'learned', 'cut_at', 'hold', 'tat', 'iv', 'cap')
local learned = tonumber(s[1])
if ARGV[1] ~= '' then
  local rate = tonumber(ARGV[1])
  if learned == nil or rate < learned then
    redis.call('HSET', t, 'learned', fmt(rate), 'cut_at', fmt(now))
    learned = rate
  elseif rate > learned and now - (tonumber(s[2]) or 0) >= tonumber(ARGV[5]) then
    redis.call('HSET', t, 'learned', fmt(rate))
    learned = rate
  end
end
local hold = tonumber(s[3]) or 0
if ARGV[2] ~= '' then
  local till = now + tonumber(ARGV[2])
  if till > hold then
    hold = till
    redis.call('HSET', t, 'hold', fmt(till))
    local tat, iv, cap = tonumber(s[4]), tonumber(s[5]), tonumber(s[6])
    if tat ~= nil and iv ~= nil and cap ~= nil then
      -- No burst after the pause: the bucket starts again empty at the hold's end.
      redis.call('HSET', t, 'tat', fmt(math.max(tat, till + (cap - 1) * iv)))
    end
  end
end
if ARGV[3] == '1' then
  local since = tonumber(redis.call('HGET', KEYS[2], 't429_since'))
  if since == nil or now - since > tonumber(ARGV[6]) then
    redis.call('HSET', KEYS[2], 't429', 0, 't429_since', fmt(now))
  end
  redis.call('HINCRBY', KEYS[2], 't429', 1)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('PEXPIRE', t, ttl)
redis.call('ZADD', KEYS[3], now, ARGV[7])
redis.call('ZADD', KEYS[4], now, ARGV[8])
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
return {learned and fmt(learned) or '', fmt(math.max(0, hold - now))}
"""
)

#: KEYS: runners, scopes, meta, projects
#: ARGV: runner, runner ttl (s), key ttl (ms), scope, endpoint, leaving ('1'/'0')
#: Returns: the number of live runners in the scope
HEARTBEAT = (
    _COMMON
    + """
local now = now_s()
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. fmt(now - tonumber(ARGV[2])))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. fmt(now - ttl / 1000))
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. fmt(now - ttl / 1000))
if ARGV[6] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  redis.call('HSET', KEYS[3], 'endpoint', ARGV[5])
end
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
return redis.call('ZCARD', KEYS[1])
"""
)
