"""Alert delivery: a durable outbox on Redis and one Notifier per channel type.

    gex:{SYM}:alerts (the owned symbols' outboxes and gex:{*}:alerts, notify/streams.py)
      --XREADGROUP (group notify:<channel>)--> ChannelWorker --> silence? --> send
        then policy.decide(outcome, attempts, time since the first failure):
        ack       -> SET gex:{SYM}:sent:{id}:{ch} NX PX + XACK (one script, outbox.lua)
        silenced  -> XADD gex:silenced, then XACK, never sent
        retry     -> equal-jitter backoff or Retry-After, within max_retry_duration;
                     attempts and the first failure's time in gex:{SYM}:retry:{id}:{ch}
        dead      -> XADD gex:dead (reason), then XACK; permanent failures and a spent budget
        disable   -> a 410 Gone: the channel stops, its alerts stay queued, operator alerted

Modules: `base` (the Notifier interface, outcomes, HTTP classification), `channel` (what every
channel's config has), `registry` (channel types by name), one module per channel type with its
config struct and renderer (`webhook`, `slack`, `email`, `console`, `alertmanager`, `discord`,
`teams`), `render` (the facts every renderer shares), `http` (the POST, never following a
redirect), `policy` (the pure delivery decision), `channel_worker` (one channel's loop),
`throttle` (send budget), `outbox` (Redis operations), `dispatch` (the Dispatcher),
`silences`, `sample`, `commands` (`notify-test`, `outbox`), `worker` (delivery alone).

Choices an operator should know:
- Groups are created at `$` when a channel is first seen: a new channel gets no history; a
  restart resumes from the group's last-delivered id and misses nothing.
- At-least-once: the sent marker is written right after the receiver's 2xx, together with the
  XACK. A crash in between (or mid-request) redelivers that one message once, with the same
  `webhook-id` / Message-ID; every other redelivery path checks the marker first.
- A channel delivers in order and holds its queue while its head is in backoff; channels
  never wait for each other. Consumer name: the daemon's instance id, or
  `<hostname>:<GEX_ALERTD_CONSUMER>` when that is set (as before per-symbol outboxes);
  `notify.worker`: `<hostname>:<GEX_ALERTD_CONSUMER or "main">`. Two readers must
  never share one: each would take the other's pending entries for its own at a restart.
- Grouping (`group_wait` > 0): alerts arriving within the window go out as one message; later
  batches at most every `group_interval`. A message once formed is retried as that message
  (same members, same id). A grouped webhook body is an `AlertGroup` (`{"id": "group-<hash
  of member ids>", "type": "group", "count", "severity", "summary", "alerts": [...]}`); a
  single alert is always the bare AlertEvent (the contract).
- Retries: 408/425/5xx, timeouts and connection errors are retried for `max_retry_duration`
  (1 h) from the first failure, attempts uncapped unless `max_attempts` is set; a 429 waits
  its Retry-After and uses neither (the receiver works, it asks us to slow down). A 3xx is
  never followed: a failure naming the Location.
- Dead letters keep the event, the channel, the attempts and a redacted reason;
  `gex-alertd outbox retry` re-enqueues them for their one channel.
"""
