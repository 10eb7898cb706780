-- XAUTOCLAIM over many outbox streams of one node in one call, answering only for the streams
-- that had something: most outboxes have nothing pending, and one XAUTOCLAIM per stream from
-- the client was 5,000 commands every claim_idle/2 at 5,000 symbols (issue 12). Not for a
-- cluster: the keys are in different slots (notify/outbox.py pipelines one per stream there).
--
-- KEYS the outbox streams   ARGV[1] the channel's consumer group   ARGV[2] this consumer
-- ARGV[3] min idle ms   ARGV[4] COUNT per stream   ARGV[4 + i] the start id for KEYS[i]
-- Returns {i, next cursor, claimed entries, deleted ids} for each stream that had claimed or
-- deleted entries or more to scan. A stream without the group (never read) is skipped; any
-- other error is raised.

local out = {}
for i, key in ipairs(KEYS) do
  local r = redis.pcall('XAUTOCLAIM', key, ARGV[1], ARGV[2], ARGV[3], ARGV[4 + i], 'COUNT', ARGV[4])
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'NOGROUP', 1, true) then
      return redis.error_reply(r.err)
    end
  else
    local deleted = r[3] or {}
    if r[1] ~= '0-0' or #r[2] > 0 or #deleted > 0 then
      out[#out + 1] = {i, r[1], r[2], deleted}
    end
  end
end
return out
