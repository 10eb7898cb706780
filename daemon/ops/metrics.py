"""Prometheus metrics, defined once so every module increments the same series.

Must never take a per-symbol (or per-target) label: at 5,000 symbols one label multiplies every
series by 5,000. Per-symbol detail belongs in logs and `/healthz`; here only aggregates.
"""

from __future__ import annotations

import platform

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from gex_alertd import __version__

# `_created` doubles every counter and histogram for a value nobody graphs. The switch is
# process-wide and read at scrape time, so it also covers metrics defined after this line.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)
# process_* (CPU, RSS, open fds, start time) and python_info. They read /proc/self and
# /proc/stat: the unit's ProtectProc=invisible keeps both; ProcSubset=pid would blank process_*.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
BUILD = Info("gexalertd_build", "Daemon version and Python runtime", registry=REGISTRY)
BUILD.info({"version": __version__, "python": platform.python_version()})

POLLS = Counter(
    "gexalertd_polls", "Upstream polls by outcome (ok, repeat, or the error kind)",
    ["status"], registry=REGISTRY,
)  # fmt: skip
REQUEST_LATENCY = Histogram(
    "gexalertd_request_latency_seconds", "Upstream request latency",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY,
)  # fmt: skip
RATE_LIMIT_WAIT = Counter(
    "gexalertd_rate_limit_wait_seconds",
    "Time spent waiting on the key's request budget or Retry-After", registry=REGISTRY,
)  # fmt: skip
REDIS_ERRORS = Counter(
    "gexalertd_redis_errors",
    "Redis errors on the poll/commit path by class (connection, auth, oom, readonly, script, "
    "conflict, data; see redis_errors.py)", ["class"], registry=REGISTRY,
)  # fmt: skip
SNAPSHOTS_SET_ASIDE = Counter(
    "gexalertd_snapshots_set_aside",
    "Snapshots that could never commit, set aside to gex:dead with the reason", registry=REGISTRY,
)  # fmt: skip
SNAPSHOTS_REFUSED = Counter(
    "gexalertd_snapshots_refused",
    "Fetched snapshots refused for their as_of (future: beyond source.max_future_s; expired: "
    "older than redis.retention)", ["reason"], registry=REGISTRY,
)  # fmt: skip
SNAPSHOTS = Counter("gexalertd_snapshots_stored", "Snapshots committed to Redis", registry=REGISTRY)
COMMIT_LATENCY = Histogram(
    "gexalertd_commit_latency_seconds", "Atomic snapshot+rules commit latency",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25), registry=REGISTRY,
)  # fmt: skip
ALERTS_FIRED = Counter(
    "gexalertd_alerts_fired", "Alerts committed to the outbox", ["rule"], registry=REGISTRY
)
ALERTS_SENT = Counter(
    "gexalertd_alerts_sent", "Alert deliveries by channel and outcome", ["channel", "outcome"],
    registry=REGISTRY,
)  # fmt: skip
OUTBOX_PENDING = Gauge(
    "gexalertd_outbox_pending",
    "Outbox entries not yet acknowledged",
    ["channel"],
    registry=REGISTRY,
)
OUTBOX_LAG = Gauge(
    "gexalertd_outbox_lag_seconds", "Age of the oldest unacknowledged outbox entry", ["channel"],
    registry=REGISTRY,
)  # fmt: skip
DEAD_LETTERS = Counter(
    "gexalertd_dead_letters",
    "Alerts moved to the dead-letter stream",
    ["channel"],
    registry=REGISTRY,
)
CHANNEL_DISABLED = Gauge(
    "gexalertd_channel_disabled",
    "1 while a channel is disabled (its receiver answered 410 Gone); alerts wait in the outbox",
    ["channel"],
    registry=REGISTRY,
)
CONFIG_RELOADS = Counter(
    "gexalertd_config_reloads", "SIGHUP config reloads by outcome (applied, refused)", ["outcome"],
    registry=REGISTRY,
)  # fmt: skip

# Set by the poll engine. Means and maxima over the owned targets, never one series per target.
WATCH_TARGETS = Gauge(
    "gexalertd_watch_targets", "Watch targets this daemon owns and polls", registry=REGISTRY
)
POLL_INTERVAL_TARGET = Gauge(
    "gexalertd_poll_interval_target_seconds", "Mean configured poll interval over owned targets",
    registry=REGISTRY,
)  # fmt: skip
POLL_INTERVAL_ACHIEVED = Gauge(
    "gexalertd_poll_interval_achieved_seconds",
    "Mean achieved poll interval over owned targets (recent polls)", registry=REGISTRY,
)  # fmt: skip
POLL_OVERDUE = Gauge(
    "gexalertd_poll_queue_overdue_seconds",
    "Age of the most overdue target in the poll queue (0 when none is late)", registry=REGISTRY,
)  # fmt: skip
COMMIT_BATCH = Histogram(
    "gexalertd_commit_batch_size", "Snapshots per pipelined commit round trip",
    buckets=(1, 2, 4, 8, 16, 32, 64), registry=REGISTRY,
)  # fmt: skip
COMMIT_NOT_REPLICATED = Counter(
    "gexalertd_commit_not_replicated_total",
    "Commits whose WAIT saw too few replicas (kept pending and retried)", registry=REGISTRY,
)  # fmt: skip
MEMBERS = Gauge(
    "gexalertd_cluster_members", "Live daemons sharing this Redis (heartbeat)", registry=REGISTRY
)
