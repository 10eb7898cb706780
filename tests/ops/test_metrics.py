"""The metric definitions: bounded cardinality (no per-symbol label) and the poll-engine gauges."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from gex_alertd.ops import metrics

POLL_ENGINE = {
    "WATCH_TARGETS": ("gexalertd_watch_targets", "gauge"),
    "POLL_INTERVAL_TARGET": ("gexalertd_poll_interval_target_seconds", "gauge"),
    "POLL_INTERVAL_ACHIEVED": ("gexalertd_poll_interval_achieved_seconds", "gauge"),
    "POLL_OVERDUE": ("gexalertd_poll_queue_overdue_seconds", "gauge"),
    "COMMIT_BATCH": ("gexalertd_commit_batch_size", "histogram"),
    "MEMBERS": ("gexalertd_cluster_members", "gauge"),
}


def test_no_metric_has_a_symbol_label() -> None:
    # every labelled metric in use, so the collect() walk below sees its label names
    metrics.POLLS.labels("ok").inc(0)
    metrics.ALERTS_FIRED.labels("symbol-check").inc(0)
    metrics.ALERTS_SENT.labels("symbol-check", "ok").inc(0)
    metrics.OUTBOX_PENDING.labels("symbol-check").set(0)
    metrics.OUTBOX_LAG.labels("symbol-check").set(0)
    metrics.DEAD_LETTERS.labels("symbol-check").inc(0)
    metrics.CONFIG_RELOADS.labels("applied").inc(0)

    seen = 0
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            seen += 1
            assert "symbol" not in sample.labels, f"{sample.name} has a symbol label"
    assert seen > 0
    # a labelled metric with no child yet has no samples; its declared label names still count
    kinds = (MetricWrapperBase, metrics.PlainCounter, metrics.PlainHistogram)
    declared = [m for m in vars(metrics).values() if isinstance(m, kinds)]
    assert metrics.POLLS in declared and metrics.REQUEST_LATENCY in declared
    for metric in declared:
        assert "symbol" not in metric._labelnames, metric  # no public accessor for label names


def test_poll_engine_metrics_exist_without_labels() -> None:
    families = {f.name: f for f in metrics.REGISTRY.collect()}
    for attr, (name, kind) in POLL_ENGINE.items():
        metric = getattr(metrics, attr)
        assert metric._labelnames == (), attr  # no public accessor for label names
        assert families[name].type == kind
    batch = families["gexalertd_commit_batch_size"]
    bounds = [s.labels["le"] for s in batch.samples if s.name.endswith("_bucket")]
    assert bounds == ["1.0", "2.0", "4.0", "8.0", "16.0", "32.0", "64.0", "+Inf"]


BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
# on the bounds, between them, past the last, zero, NaN, ints (a batch size)
AMOUNTS = st.one_of(
    st.sampled_from([*BOUNDS, 0, 0.0, 1, 3, 16, 64, 1e9, math.nan]),
    st.floats(min_value=0, max_value=1, allow_nan=False),
)


@settings(max_examples=60, deadline=None)
@given(
    observed=st.lists(AMOUNTS, max_size=30),
    counted=st.lists(
        st.tuples(
            st.sampled_from(["ok", "repeat", "429", "error"]), AMOUNTS.filter(lambda a: a == a)
        ),
        max_size=12,
    ),
)
def test_the_plain_metrics_write_what_prometheus_clients_own_would(
    observed: list[float], counted: list[tuple[str, float]]
) -> None:
    """/metrics keeps the same series and values: the plain counter and histogram against
    prometheus-client's Counter and Histogram given the same calls, byte for byte."""
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    Counter("x_polls", "Polls by status", ["status"], registry=theirs)
    c1 = Counter("x_stored", "Stored", registry=theirs)
    h1 = Histogram("x_latency_seconds", "Latency", buckets=BOUNDS, registry=theirs)
    h2 = Histogram("x_batch", "Batch", buckets=(1, 2, 4, 8, 16, 32, 64), registry=theirs)
    labelled1 = theirs._names_to_collectors["x_polls"]
    metrics.PlainCounter("x_polls", "Polls by status", ["status"], registry=ours)
    c2 = metrics.PlainCounter("x_stored", "Stored", registry=ours)
    h3 = metrics.PlainHistogram("x_latency_seconds", "Latency", buckets=BOUNDS, registry=ours)
    h4 = metrics.PlainHistogram("x_batch", "Batch", buckets=(1, 2, 4, 8, 16, 32, 64), registry=ours)
    labelled2 = ours._names_to_collectors["x_polls"]
    assert generate_latest(ours) == generate_latest(theirs)  # nothing counted yet
    for amount in observed:
        for h in (h1, h2, h3, h4):
            h.observe(amount)
    for status, amount in counted:
        labelled1.labels(status).inc(amount)  # type: ignore[attr-defined]
        labelled2.labels(status=status).inc(amount)  # type: ignore[attr-defined]
        c1.inc()
        c2.inc()
    assert generate_latest(ours) == generate_latest(theirs)


def test_the_plain_metrics_refuse_what_prometheus_client_refuses() -> None:
    registry = CollectorRegistry()
    counter = metrics.PlainCounter("y_stored", "Stored", registry=registry)
    labelled = metrics.PlainCounter("y_polls", "Polls", ["status"], registry=registry)
    with pytest.raises(ValueError, match="non-negative"):
        counter.inc(-1)
    with pytest.raises(ValueError, match="label"):
        labelled.inc()
    with pytest.raises(ValueError, match="label"):
        labelled.labels("ok", "extra")
    with pytest.raises(ValueError, match="label"):
        labelled.labels(other="ok")
    with pytest.raises(ValueError, match="Duplicated"):  # the registry still sees its names
        metrics.PlainCounter("y_stored", "again", registry=registry)
    with pytest.raises(ValueError, match="sorted"):
        metrics.PlainHistogram("y_h", "H", buckets=(2, 1), registry=registry)
