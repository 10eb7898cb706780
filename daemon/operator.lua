-- The atomic commit of one operator rule's transition (or one heartbeat): rule state + outbox
-- event, all or nothing. Operator rules have no snapshot to commit with (the source failed),
-- so they get this small script of their own. Every check happens before the first write.
-- Without a state field it is `enqueue_once` (heartbeat, replay --send, follow-ups, 410 alert).
--
-- KEYS[1] state hash (unused without a state field)   KEYS[2] outbox stream
-- KEYS[3] dedup key of the event (unused without an event)
-- ARGV[1] state field ('' = no state: a heartbeat)   ARGV[2] expected value ('' = absent)
-- ARGV[3] new value   ARGV[4] dedup ttl ms   ARGV[5] n, the number of consumer groups that
-- follow   ARGV[6 .. 5+n] the event's channels' groups   ARGV[6+n ..] outbox entry fields
-- (none = no event)
-- Returns {'ok', 1 | 0 (the event was enqueued before)} | {'conflict', current value}

local field = ARGV[1]
if field ~= '' then
  local current = redis.call('HGET', KEYS[1], field) or ''
  if current ~= ARGV[2] then
    return {'conflict', current}
  end
end

local enqueued = 0
local n = tonumber(ARGV[5] or '0')
if #ARGV > 5 + n then
  -- the dedup key is written before the outbox: a key of another type there would fail the
  -- script after it and lose the event for good (later tries find the dedup key); refused here
  local kind = redis.call('TYPE', KEYS[2]).ok
  if kind ~= 'stream' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE ' .. KEYS[2] .. ' holds a ' .. kind .. ', not the outbox stream')
  end
  -- an event id is enqueued once, whoever commits it and however often
  if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[4]) then
    -- each channel's group exists before its entry does (see commit.lua)
    for g = 6, 5 + n do redis.pcall('XGROUP', 'CREATE', KEYS[2], ARGV[g], '$', 'MKSTREAM') end
    local entry = {'XADD', KEYS[2], '*'}
    for j = 6 + n, #ARGV do entry[#entry + 1] = ARGV[j] end
    redis.call(unpack(entry))
    enqueued = 1
  end
end

if field ~= '' then
  redis.call('HSET', KEYS[1], field, ARGV[3])
end
return {'ok', enqueued}
