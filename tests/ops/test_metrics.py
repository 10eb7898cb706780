"""The metric definitions: bounded cardinality (no per-symbol label) and the poll-engine gauges."""

from __future__ import annotations

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
    declared = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
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
