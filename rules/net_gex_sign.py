"""net_gex_sign: the sign of the served live_net_gex changes (never re-derived from rows).

Values with |net| <= min_abs (and an exact zero) are ignored: they neither confirm nor break
a streak. A new sign must be seen `confirm` snapshots in a row (outside the deadband) before
it becomes the confirmed sign; the alert fires at that moment.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from gex_alertd.model import FlowGex
from gex_alertd.rules.base import Fired, RuleBase, RuleType, fmt_money
from gex_alertd.rules.words import label_word

_NAMES = {1: "positive", -1: "negative", 0: None}


class NetGexSign(RuleBase, tag="net_gex_sign", kw_only=True):
    direction: Literal["to_negative", "to_positive", "any"] = "any"
    min_abs: float = 0.0
    confirm: int = 1

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        if self.min_abs < 0:
            out.append(("min_abs", f"must be >= 0 (dollars), got {self.min_abs}"))
        if self.confirm < 1:
            out.append(("confirm", f"must be >= 1 snapshot, got {self.confirm}"))
        return out


class SignState(msgspec.Struct, array_like=True):
    sign: int = 0  # the confirmed sign; 0 until a value outside the deadband is seen
    candidate: int = 0  # the other sign, while it is being confirmed
    streak: int = 0


def evaluate(
    rule: NetGexSign, state: SignState | None, snap: FlowGex, prev: FlowGex | None
) -> tuple[SignState, list[Fired]]:
    old = state if state is not None else SignState()
    net = snap.live_net_gex
    if abs(net) <= rule.min_abs or net == 0.0:
        return old, []
    s = 1 if net > 0 else -1
    if old.sign == 0:
        return SignState(s), []  # the first sign seen is the baseline, not a change
    if s == old.sign:
        return (old if old.streak == 0 else SignState(s)), []
    streak = old.streak + 1 if old.candidate == s else 1
    if streak < rule.confirm:
        return SignState(old.sign, s, streak), []
    new = SignState(s)
    if state is None:
        return new, []
    direction = f"to_{_NAMES[s]}"
    if rule.direction not in ("any", direction):
        return new, []
    summary = (
        f"{snap.symbol} net GEX turned {_NAMES[s]}: {fmt_money(net)} "
        f"(spot {snap.underlying_price:.2f})"
    )
    details = {
        "direction": direction,
        "previous_sign": _NAMES[old.sign],
        "sign": _NAMES[s],
        "live_net_gex": net,
        "live_net_gex_label": label_word(snap.live_net_gex_label),
        "spot": snap.underlying_price,
        "flip": snap.flip,
        "min_abs": rule.min_abs,
        "confirm": rule.confirm,
    }
    return new, [Fired(summary, details)]


RULE = RuleType(NetGexSign, SignState, evaluate)
