-- The atomic commit of one snapshot: stream entry + rule state + outbox alerts, all or nothing.
-- Every check happens before the first write, so a refused commit changes nothing; Redis runs
-- the script as one unit and the AOF records it as one unit.
--
-- KEYS[1] snapshot stream   KEYS[2] state hash   KEYS[3] the symbol's outbox stream (same slot)
-- KEYS[4 ..] per alert: dedup key, cooldown key (pairs, in alert order)
-- ARGV[1] expected state version ('' = the state hash did not exist)
-- ARGV[2] snapshot entry ms (entry ID is <ms>-0)
-- ARGV[3] msgpack of {trim, snapshot fields, state fields, alerts}: trim is {} | {'MAXLEN', n} |
--   {'MINID', retention ms}, the cut then taken from this server's clock (TIME), never from the
--   snapshot's as_of (a body dated 2099 once cut a whole stream down to itself); the fields as flat
--   field, value lists; an alert is {dedup ttl ms, cooldown ms, alert id, outbox fields,
--   its channels' consumer groups};
--   numbers are strings (one blob instead of ~40 arguments: see commit.build_args)
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
-- a version HINCRBY counts on: what Redis reads as an integer (no leading zero, no '-0') and
-- short enough that the reply's tostring (14 digits) gives it back in digits. Any other one was
-- edited by hand ('', '1.5', '01', bytes that are no text): counted on, it would fail the script
-- after the snapshot and the state were written (fired), losing the alert; instead it starts
-- again at this entry's ms, a value no daemon keeps (kept versions of the stream's count are
-- small; an earlier restart's were at most its own, older, entry ms). A daemon that cannot
-- read it as text sends '' for it (commit.decode_state), taken here as it is for no version
local counted = version and #version < 14
  and (version == '0' or string.match(version, '^%-?[1-9]%d*$') ~= nil)
if (version or '') ~= ARGV[1] and not (version and not counted and ARGV[1] == '') then
  return {'conflict', version or ''}
end

local payload = cmsgpack.unpack(ARGV[3])
local trim, fields, state_fields, alerts = payload[1], payload[2], payload[3], payload[4]

-- the outbox is written last: a key of another type there would fail the script after the
-- snapshot and the state were written, and lose the alert; refused here, nothing is written
if #alerts > 0 then
  local kind = redis.call('TYPE', outbox).ok
  if kind ~= 'stream' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE ' .. outbox .. ' holds a ' .. kind .. ', not the outbox stream')
  end
end

local xadd = {'XADD', snap}
if trim[1] == 'MAXLEN' then
  xadd = {'XADD', snap, 'MAXLEN', '~', trim[2]}
elseif trim[1] == 'MINID' then
  local now = redis.call('TIME')
  local cut = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(trim[2])
  if cut > 0 then
    xadd = {'XADD', snap, 'MINID', '~', string.format('%d', cut)}
  end
end
xadd[#xadd + 1] = ARGV[2] .. '-0'
for j = 1, #fields do xadd[#xadd + 1] = fields[j] end
-- XADD is the first write: if Redis refuses the ID (the stream was emptied but its last ID is
-- newer), nothing has been written yet.
local added = redis.pcall(unpack(xadd))
if type(added) == 'table' and added.err then
  if string.find(added.err, 'equal or smaller', 1, true) then
    return {'repeat', ''}
  end
  return redis.error_reply(added.err)
end

if #state_fields > 0 then
  local hset = {'HSET', state}
  for j = 1, #state_fields do hset[#hset + 1] = state_fields[j] end
  redis.call(unpack(hset))
end
redis.call('HSET', state, '_last', ARGV[2])
local newv = ARGV[2]
if not version or counted then
  newv = redis.call('HINCRBY', state, '_v', 1)
else
  redis.call('HSET', state, '_v', newv)
end

local enqueued = {}
for a = 1, #alerts do
  local alert = alerts[a]
  local dedup_ttl, cooldown_ms, id, out, groups = alert[1], tonumber(alert[2]), alert[3], alert[4], alert[5]
  local dedup_key, cooldown_key = KEYS[2 + 2 * a], KEYS[3 + 2 * a]
  -- an alert id is enqueued once, even if the state were lost and the data replayed
  if redis.call('SET', dedup_key, '1', 'NX', 'PX', dedup_ttl) then
    -- each channel's group exists before its entry does (at '$': the entry is new to it),
    -- whoever writes first, so no reader can create it later past this entry
    for g = 1, #groups do redis.pcall('XGROUP', 'CREATE', outbox, groups[g], '$', 'MKSTREAM') end
    local entry = {'XADD', outbox, '*'}
    for j = 1, #out do entry[#entry + 1] = out[j] end
    redis.call(unpack(entry))
    enqueued[#enqueued + 1] = id
    if cooldown_ms > 0 then
      -- informational (TTL shows the cooldown left); the decision itself is made on as_of
      redis.call('SET', cooldown_key, id, 'PX', alert[2])
    end
  end
end
return {'ok', tostring(newv), enqueued}
