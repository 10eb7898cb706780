"""rules.words: the upstream's label and flip status reach an alert's details as known words."""

from __future__ import annotations

import msgspec
import pytest

from gex_alertd.rules.words import flip_status_word, label_word
from tests.rules.factory import snap
from tests.rules.helpers import make_rule, run

LINK = "[reset your key](https://evil.example)"


@pytest.mark.parametrize(
    ("served", "word"),
    [
        ("positive", "positive"),
        (" Negative ", "negative"),
        (LINK, "other"),
        ("", "other"),
        (None, None),
    ],
)
def test_label_word(served: str | None, word: str | None) -> None:
    assert label_word(served) == word


@pytest.mark.parametrize(
    ("served", "word"),
    [
        (None, "available"),
        ("available", "available"),
        ("No_Boundary ", "no_boundary"),
        ("quality_budget", "quality_budget"),
        ("a_status_added_later", "unknown"),
        (LINK, "unknown"),
    ],
)
def test_flip_status_word(served: str | None, word: str) -> None:
    assert flip_status_word(served) == word


def test_upstream_text_never_reaches_an_alerts_details() -> None:
    # details ride into Teams facts and Discord fields, which render markdown: an upstream's
    # 128 characters there made a link in the card; the alerts fire as before
    sign = make_rule(type="net_gex_sign", direction="any")
    seq = [snap(at=0, net=1e9), snap(at=1, net=-1e9)]
    seq = [msgspec.structs.replace(s, live_net_gex_label=LINK) for s in seq]
    [(_, fired)] = run(sign, seq)
    assert fired.details["live_net_gex_label"] == "other"

    cross = make_rule(type="flip_cross", direction="any")
    seq = [snap(at=0, spot=500, flip=490), snap(at=1, spot=480, flip=490)]
    seq = [msgspec.structs.replace(s, live_net_gex_label=LINK) for s in seq]
    [(_, fired)] = run(cross, seq)
    assert fired.details["live_net_gex_label"] == "other"

    guard = make_rule(type="flip_guard", **{"for": 0})
    seq = [snap(at=0, spot=500, flip=495), snap(at=1, spot=500, flip=495, status=LINK)]
    [(_, fired)] = run(guard, seq)
    assert fired.details["gamma_flip_status"] == "unknown"
    assert LINK not in repr(fired.details) and LINK not in fired.summary
