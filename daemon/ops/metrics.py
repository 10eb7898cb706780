"""Prometheus metrics, defined once so every module increments the same series.

Must never take a per-symbol (or per-target) label: at 5,000 symbols one label multiplies every
series by 5,000. Per-symbol detail belongs in logs and `/healthz`; here only aggregates.
"""

from __future__ import annotations

import math
import platform
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from gex_alertd import __version__

# `_created` doubles every counter and histogram for a value nobody graphs. The switch is
# process-wide and read at scrape time, so it also covers metrics defined after this line.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)


# The metrics every poll or commit touches are counted in plain Python numbers and exported by
# the registry when /metrics is scraped (a custom collector). prometheus-client's Counter.inc and
# Histogram.observe take a lock per value and walk the buckets in Python: 0.26 and 0.52 us, four
# of them a stored snapshot. These are only ever counted on the event loop's thread; a scrape
# reads the numbers as they are. The exposition is what prometheus-client's own Counter and
# Histogram write for the same observations (tests/ops/test_metrics.py holds them together).


class _CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount


class PlainCounter(Collector):
    """A counter (optionally labelled) kept as plain floats; `inc` and `labels` as
    prometheus_client.Counter's."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], _CounterChild] = {}
        self._value = _CounterChild()
        if registry is not None:
            registry.register(self)

    def inc(self, amount: float = 1) -> None:
        if self._labelnames:
            raise ValueError(f"counter {self._name} has labels: count through labels()")
        self._value.inc(amount)

    def labels(self, *values: object, **named: object) -> _CounterChild:
        if not self._labelnames:
            raise ValueError(f"counter {self._name} has no labels")
        if values and named:
            raise ValueError("labels() takes label values by position or by name, not both")
        if named:
            if sorted(named) != sorted(self._labelnames):
                raise ValueError(f"incorrect label names for {self._name}")
            values = tuple(named[n] for n in self._labelnames)
        if len(values) != len(self._labelnames):
            raise ValueError(f"incorrect label count for {self._name}")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = _CounterChild()
        return child

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        if self._labelnames:
            for key, child in list(self._children.items()):
                family.add_metric(key, child.value)
        else:
            family.add_metric((), self._value.value)
        yield family


class PlainHistogram(Collector):
    """An unlabelled histogram kept as plain numbers; `observe` as prometheus_client.Histogram's
    (a value goes into the first bucket whose bound is >= it; NaN only into the sum)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = None,
    ) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError("Buckets not in sorted order")
        if bounds and bounds[-1] != math.inf:
            bounds.append(math.inf)
        if len(bounds) < 2:
            raise ValueError("Must have at least two buckets")
        self._name = name
        self._documentation = documentation
        self._labelnames: tuple[str, ...] = ()
        self._bounds = tuple(bounds)
        self._les = [floatToGoString(b) for b in bounds]
        self._counts = [0] * len(bounds)
        self._sum = 0.0
        if registry is not None:
            registry.register(self)

    def observe(self, amount: float) -> None:
        self._sum += amount
        if amount == amount:  # NaN is in no bucket
            self._counts[bisect_left(self._bounds, amount)] += 1

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self._name, self._documentation)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        cumulative = 0.0
        buckets = []
        for le, count in zip(self._les, list(self._counts), strict=True):
            cumulative += count
            buckets.append((le, cumulative))
        family.add_metric((), buckets, self._sum)
        yield family


# process_* (CPU, RSS, open fds, start time) and python_info. They read /proc/self and
# /proc/stat: the unit's ProtectProc=invisible keeps both; ProcSubset=pid would blank process_*.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
BUILD = Info("gexalertd_build", "Daemon version and Python runtime", registry=REGISTRY)
BUILD.info({"version": __version__, "python": platform.python_version()})

POLLS = PlainCounter(
    "gexalertd_polls", "Upstream polls by outcome (ok, repeat, or the error kind)",
    ["status"], registry=REGISTRY,
)  # fmt: skip
REQUEST_LATENCY = PlainHistogram(
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
SNAPSHOTS = PlainCounter(
    "gexalertd_snapshots_stored", "Snapshots committed to Redis", registry=REGISTRY
)
COMMIT_LATENCY = PlainHistogram(
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
COMMIT_BATCH = PlainHistogram(
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
