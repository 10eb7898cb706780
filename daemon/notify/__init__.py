"""Alert delivery: a durable outbox on Redis and one Notifier per channel type.

    gex:alerts --XREADGROUP (group notify:<channel>)--> ChannelWorker --> Notifier.send
        ok        -> SET gex:sent:{id}:{ch} NX PX + XACK (one MULTI)
        retry     -> backoff with jitter or Retry-After; attempts in gex:try:{id}:{ch}
        permanent -> XADD gex:dead (reason) + XACK; the same when attempts run out

Modules: `base` (interface and outcomes), `render` (text, HTML, Block Kit, console line, webhook
body), `webhook`, `slack`, `email`, `console`, `outbox` (Redis operations), `dispatch` (the
per-channel pipeline and the Dispatcher), `commands` (`notify-test`, `outbox`), `worker`
(delivery side alone, as a process).

Choices an operator should know:
- Groups are created at `$` when a channel is first seen: a new channel gets no history; a
  restart resumes from the group's last-delivered id and misses nothing.
- At-least-once: the sent marker is written right after the receiver's 2xx, together with the
  XACK. A crash in between (or mid-request) redelivers that one message once, with the same
  `webhook-id` / Message-ID; every other redelivery path checks the marker first.
- A channel delivers in order and holds its queue while its head is in backoff; channels
  never wait for each other. Consumer name: `<hostname>:<GEX_ALERTD_CONSUMER or "main">`.
- Grouping (`group_wait` > 0): alerts arriving within the window go out as one message; later
  batches at most every `group_interval`. A grouped webhook body is an `AlertGroup`
  (`{"id": "group-<hash of member ids>", "type": "group", "count", "severity", "summary",
  "alerts": [AlertEvent...]}`); a single alert is always the bare AlertEvent (the contract).
- Retries: 408/425/5xx, timeouts and connection errors use exponential backoff with jitter
  and count against `max_attempts`; a 429 waits its Retry-After and does not count (the
  receiver works, it asks us to slow down), so rate limiting delays alerts but never drops them.
- Dead letters keep the event, the channel, the attempts and a redacted reason;
  `gex-alertd outbox retry` re-enqueues them for their one channel.
"""
