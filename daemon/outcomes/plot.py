"""`--plot FILE.png`: each rule's distribution of moves against its baseline, per horizon.

matplotlib is an optional extra (`pip install gex-alertd[plot]`), imported only here, with the
Agg backend (a file, no display).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gex_alertd.outcomes.report import Distributions, Report

MAX_RULES = 12  # rows of the grid; more rules than that go to more than one report


class PlotUnavailable(RuntimeError):
    pass


def plot(report: Report, dist: Distributions, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'gex-alertd[plot]'") from None
    rules = sorted({r.rule for r in report.rows})[:MAX_RULES]
    cols = max(1, len(report.horizons))
    fig, axes = plt.subplots(
        max(1, len(rules)), cols, figsize=(3.2 * cols, 2.4 * max(1, len(rules))), squeeze=False
    )
    for i, rule in enumerate(rules):
        for j, h in enumerate(report.horizons):
            ax = axes[i][j]
            a = dist.alerts.get((rule, h), np.zeros(0))
            b = dist.baseline.get((rule, h), np.zeros(0))
            both = np.concatenate([a, b])
            # one set of bins for both, so the bars compare
            bins = np.histogram_bin_edges(both, bins=30) if len(both) else 30
            if len(b):
                ax.hist(b, bins=bins, density=True, alpha=0.5, color="grey", label="baseline")
            if len(a):
                ax.hist(a, bins=bins, density=True, alpha=0.6, color="tab:blue", label="alerts")
            ax.axvline(0.0, color="black", linewidth=0.5)
            ax.set_title(f"{rule} {h}", fontsize=8)
            ax.tick_params(labelsize=7)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.suptitle("Move after alert (%) vs random moments, same symbols and hours", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
