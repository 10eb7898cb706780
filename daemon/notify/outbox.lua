-- One channel is done with some entries of one outbox stream: XACK them, drop their attempt
-- counters and, when they were delivered, set their sent markers, all in one step. Every key
-- shares the stream's slot ({SYM}), so this stays one script on Redis Cluster.
--
-- KEYS[1] the outbox stream   KEYS[2 ..] per entry: sent marker key, attempts key (pairs)
-- ARGV[1] the channel's consumer group   ARGV[2] marker ttl ms ('' = no marker: not delivered,
-- e.g. dead-lettered or silenced)   ARGV[3 ..] the entry ids, in the order of the key pairs
-- Returns the number of entries acked.

local ttl = ARGV[2]
for i = 3, #ARGV do
  local marker, attempts = KEYS[2 * (i - 2)], KEYS[2 * (i - 2) + 1]
  if ttl ~= '' then
    redis.call('SET', marker, '1', 'NX', 'PX', ttl)
  end
  redis.call('DEL', attempts)
end
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then
  return 0
end
return redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
