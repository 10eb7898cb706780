-- The atomic commit of one snapshot: stream entry + rule state + outbox alerts, all or nothing.
-- Every check happens before the first write, so a refused commit changes nothing; Redis runs
-- the script as one unit and the AOF records it as one unit.
--
-- KEYS[1] snapshot stream   KEYS[2] state hash   KEYS[3] outbox stream
-- KEYS[4 ..] per alert: dedup key, cooldown key (pairs, in alert order)
-- ARGV[1] expected state version ('' = the state hash did not exist)
-- ARGV[2] snapshot entry ms (entry ID is <ms>-0)
-- ARGV[3] number of trim args, then the trim args
-- then: number of snapshot fields, then field, value pairs
-- then: number of state fields, then field, value pairs
-- then: number of alerts; per alert: dedup ttl ms, cooldown ms, alert id, number of outbox
--   fields, then field, value pairs
-- Returns {'ok', version, {enqueued alert ids}} | {'repeat', top_ms} | {'conflict', version}

local snap, state, outbox = KEYS[1], KEYS[2], KEYS[3]
local ms = tonumber(ARGV[2])

local top = redis.call('XREVRANGE', snap, '+', '-', 'COUNT', 1)
if #top > 0 then
  local top_ms = tonumber(string.match(top[1][1], '^(%d+)'))
  if top_ms >= ms then
    return {'repeat', tostring(top_ms)}
  end
end

local version = redis.call('HGET', state, '_v')
if (version or '') ~= ARGV[1] then
  return {'conflict', version or ''}
end

local i = 3
local ntrim = tonumber(ARGV[i])
local xadd = {'XADD', snap}
for j = 1, ntrim do xadd[#xadd + 1] = ARGV[i + j] end
i = i + ntrim + 1
xadd[#xadd + 1] = ARGV[2] .. '-0'
local nfields = tonumber(ARGV[i])
for j = 1, 2 * nfields do xadd[#xadd + 1] = ARGV[i + j] end
i = i + 2 * nfields + 1
-- XADD is the first write: if Redis refuses the ID (the stream was emptied but its last ID is
-- newer), nothing has been written yet.
local added = redis.pcall(unpack(xadd))
if type(added) == 'table' and added.err then
  if string.find(added.err, 'equal or smaller', 1, true) then
    return {'repeat', ''}
  end
  return redis.error_reply(added.err)
end

local nstate = tonumber(ARGV[i])
if nstate > 0 then
  local hset = {'HSET', state}
  for j = 1, 2 * nstate do hset[#hset + 1] = ARGV[i + j] end
  redis.call(unpack(hset))
end
i = i + 2 * nstate + 1
redis.call('HSET', state, '_last', ARGV[2])
local newv = redis.call('HINCRBY', state, '_v', 1)

local nalerts = tonumber(ARGV[i])
i = i + 1
local enqueued = {}
for a = 1, nalerts do
  local dedup_ttl, cooldown_ms, id = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local nout = tonumber(ARGV[i + 3])
  local dedup_key, cooldown_key = KEYS[2 + 2 * a], KEYS[3 + 2 * a]
  -- an alert id is enqueued once, even if the state were lost and the data replayed
  if redis.call('SET', dedup_key, '1', 'NX', 'PX', dedup_ttl) then
    local entry = {'XADD', outbox, '*'}
    for j = 1, 2 * nout do entry[#entry + 1] = ARGV[i + 3 + j] end
    redis.call(unpack(entry))
    enqueued[#enqueued + 1] = id
    if cooldown_ms > 0 then
      -- informational (TTL shows the cooldown left); the decision itself is made on as_of
      redis.call('SET', cooldown_key, id, 'PX', cooldown_ms)
    end
  end
  i = i + 4 + 2 * nout
end
return {'ok', tostring(newv), enqueued}
