"""The provider's enum-like text fields as the words an alert's details carry.

`live_net_gex_label` and `gamma_flip_status` are the upstream's text: up to 128 characters of
anything, as far as the wire goes. An alert's details ride into chat cards that render
markdown (Teams' facts, Discord's fields), where such a value could be a link or a mention.
So details carry a known word, never the served text:
  - the label: `positive` or `negative` (any case, trimmed: `levels.regime_of`), anything
    else `other`; absent stays None;
  - the flip status: one of the documented statuses (flowgex-api.md; any case, trimmed),
    anything else `unknown` (the contract's "treat unknown values as not available", which
    `FlowGex.flip` already does); absent means `available`.
The stored snapshot keeps what was served; only what an alert shows is reduced.
"""

from __future__ import annotations

from gex_alertd.model import FLIP_AVAILABLE
from gex_alertd.rules.levels import regime_of

FLIP_STATUSES = frozenset(
    (
        FLIP_AVAILABLE,
        "no_boundary",
        "stored_sign_mismatch",
        "insufficient_local_coverage",
        "insufficient_quote_quality",
        "sensitive_root",
        "uncertain_root_path",
        "search_budget",
        "quality_budget",
    )
)
OTHER_LABEL = "other"
UNKNOWN_STATUS = "unknown"


def label_word(label: str | None) -> str | None:
    if label is None:
        return None
    return regime_of(label) or OTHER_LABEL


def flip_status_word(status: str | None) -> str:
    if status is None:
        return FLIP_AVAILABLE
    word = status.strip().lower()
    return word if word in FLIP_STATUSES else UNKNOWN_STATUS
