"""The job's Lua scripts: each one round trip, atomic (so "first writer wins" and "claimed once" hold).

    FINAL   a row's final: HSETNX line -> outcome; if it was the first, XADD the record to the finals
            stream; XACK and XDEL the row's entry either way. Returns 1 when this final won, -1 (and
            writes nothing) when the job's meta is gone (Redis restarted without its data).
    REAP    claim every pending entry of the project's stream held by a worker whose heartbeat key is gone
            (XPENDING per consumer, XCLAIM to the caller), and drop such consumers. A live worker's
            entries, however long it has held them, are never touched. Returns {id, deliveries, line,
            instance id} per entry claimed (deliveries counts this one).
    IDLE    every stream empty (no row queued or held) and the finals stream too: the job is over.

Heartbeat keys are named in ARGV (a prefix and the consumer's name), not KEYS: they share the job's hash
tag, so they live in the same Cluster slot as the stream.
"""

from __future__ import annotations

#: KEYS: final hash, finals stream, project stream, meta. ARGV: group, entry id, line, outcome, record.
FINAL = """
if redis.call('EXISTS', KEYS[4]) == 0 then return -1 end
local won = redis.call('HSETNX', KEYS[1], ARGV[3], ARGV[4])
if won == 1 then
  redis.call('XADD', KEYS[2], '*', 'r', ARGV[5])
end
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
return won
"""

#: KEYS: project stream. ARGV: group, this consumer, heartbeat key prefix, most entries per consumer.
REAP = """
local out = {}
local summary = redis.call('XPENDING', KEYS[1], ARGV[1])
if tonumber(summary[1]) == 0 or not summary[4] then return out end
local most = tonumber(ARGV[4])
for _, c in ipairs(summary[4]) do
  local name = c[1]
  if name ~= ARGV[2] and redis.call('EXISTS', ARGV[3] .. name) == 0 then
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', most, name)
    for _, p in ipairs(pending) do
      local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, p[1])
      local entry = claimed[1]
      if entry then
        local f = entry[2]
        local line, id = '', ''
        for i = 1, #f, 2 do
          if f[i] == 'l' then line = f[i + 1] elseif f[i] == 'i' then id = f[i + 1] end
        end
        table.insert(out, {p[1], tostring(tonumber(p[4]) + 1), line, id})
      end
    end
    if #pending < most then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name) end
  end
end
return out
"""

#: KEYS: finals stream, then every project stream. Returns 1 when all of them are empty.
IDLE = """
for i = 1, #KEYS do
  if redis.call('XLEN', KEYS[i]) > 0 then return 0 end
end
return 1
"""
