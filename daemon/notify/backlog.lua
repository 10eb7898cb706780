-- One channel's backlog over many outbox streams of one node in one call: the entries not yet
-- acknowledged (pending + unread) and the id of the oldest of them. From the client, one XINFO
-- GROUPS per stream (and an XPENDING or XRANGE per stream with a backlog) cost ~23 us of
-- redis-py each: ~115 ms of the daemon's CPU every 5 s at 5,000 streams (issue 12). Not for a
-- cluster: the keys are in different slots (notify/outbox.py pipelines one per stream there).
--
-- KEYS the outbox streams   ARGV[1] the channel's consumer group
-- Returns {entries not yet acknowledged, the oldest one's id or ''}. A key that is no stream,
-- or a stream without the group, counts for nothing; `lag` unknown (Redis answers nil) counts
-- the pending entries only, as the client-side path does.

local group = ARGV[1]
local total = 0
local oldest, oldest_id = nil, ''
for _, key in ipairs(KEYS) do
  local groups = redis.pcall('XINFO', 'GROUPS', key)
  if not (type(groups) == 'table' and groups.err) then
    for _, g in ipairs(groups) do
      local f = {}
      for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
      if f['name'] == group then
        local pel = tonumber(f['pending']) or 0
        local lag = type(f['lag']) == 'number' and f['lag'] or 0
        total = total + pel + lag
        local first = nil
        if pel > 0 then  -- the PEL's oldest is older than any unread entry
          first = redis.call('XPENDING', key, group)[2]
        elseif lag > 0 then
          local e = redis.call('XRANGE', key, '(' .. f['last-delivered-id'], '+', 'COUNT', 1)[1]
          first = e and e[1]
        end
        if first then
          local ms = tonumber(string.match(first, '^(%d+)'))
          if oldest == nil or ms < oldest then oldest, oldest_id = ms, first end
        end
      end
    end
  end
end
return {total, oldest_id}
