"""Prometheus metrics, defined once so every module increments the same series."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

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
SNAPSHOTS = Counter(
    "gexalertd_snapshots_stored", "Snapshots committed to Redis", registry=REGISTRY
)
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
CONFIG_RELOADS = Counter(
    "gexalertd_config_reloads", "SIGHUP config reloads by outcome (applied, refused)", ["outcome"],
    registry=REGISTRY,
)  # fmt: skip
