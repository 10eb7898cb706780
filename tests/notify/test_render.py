from __future__ import annotations

from typing import Any

import msgspec

from gex_alertd.model import AlertEvent, decode_alert, encode_alert, group_key
from gex_alertd.notify import render
from gex_alertd.notify.console import console_line
from gex_alertd.notify.email import html_body, text_body
from gex_alertd.notify.slack import slack_payload
from gex_alertd.notify.webhook import webhook_body
from tests.notify.support import alert


def test_single_webhook_body_is_exactly_the_contract_event() -> None:
    a = alert(1)
    msg_id, body = webhook_body([a])
    assert msg_id == a.id
    assert body == encode_alert(a)
    assert decode_alert(body) == a


def test_group_body_lists_members_with_a_stable_id() -> None:
    alerts = [alert(1, "SPY"), alert(2, "QQQ", "critical"), alert(3, "IWM")]
    gid, body = webhook_body(alerts)
    gid2, _ = webhook_body(list(reversed(alerts)))
    assert gid == gid2 and gid.startswith("group-")
    doc = msgspec.json.decode(body)
    assert doc["type"] == "group" and doc["count"] == 3 and doc["severity"] == "critical"
    assert [x["id"] for x in doc["alerts"]] == [a.id for a in alerts]
    assert "IWM, QQQ, SPY" in doc["summary"]


def test_subject_is_short_and_front_loaded() -> None:
    s = render.subject([alert(1)])
    assert s.startswith("[WARNING] SPY: ")
    assert len(s) <= 78
    long = alert(1, summary_pad="x")
    long = msgspec.structs.replace(long, summary="y" * 200)
    assert len(render.subject([long])) == 78
    g = render.subject([alert(1, "SPY"), alert(2, "QQQ", "critical")])
    assert g.startswith("[CRITICAL] 2 alerts: QQQ, SPY")


def test_slack_payload_has_colour_blocks_and_numbers() -> None:
    p = slack_payload([alert(1, severity="critical")])
    assert p["text"].startswith("[CRITICAL] SPY")
    att = p["attachments"][0]
    assert att["color"] == render.SEVERITY_COLOR["critical"]
    kinds = [b["type"] for b in att["blocks"]]
    assert kinds == ["section", "section", "context"]
    fields = " ".join(f["text"] for f in att["blocks"][1]["fields"])
    assert "513.10" in fields and "-$1.25B" in fields
    assert "id spy-flip:SPY:" in att["blocks"][2]["elements"][0]["text"]
    grp = slack_payload([alert(1), alert(2, "QQQ")])
    assert grp["blocks"][0]["type"] == "header" and len(grp["attachments"]) == 2


def test_text_and_html_bodies_carry_the_same_facts() -> None:
    a = alert(1)
    text, html = text_body([a]), html_body([a])
    for fact in ("SPY", a.summary, "513.10", "512.40", a.id):
        assert fact in text and fact in html
    assert "<script" not in html_body([msgspec.structs.replace(a, summary="<script>")])


def test_console_line_colour_only_when_asked() -> None:
    a = alert(1)
    plain = console_line(a, color=False)
    coloured = console_line(a, color=True)
    assert "\x1b[" not in plain and "\n" not in plain
    assert "\x1b[33m" in coloured
    assert "SPY" in plain and a.id in plain


def resolved(i: int, severity: str = "warning") -> AlertEvent:
    return msgspec.structs.replace(
        alert(i, severity=severity), id=f"resolved-{i}", status="resolved"
    )


def test_status_is_in_the_webhook_body_firing_by_default() -> None:
    _, body = webhook_body([alert(1)])
    assert msgspec.json.decode(body)["status"] == "firing"
    r = resolved(1)
    _, body = webhook_body([r])
    doc = msgspec.json.decode(body)
    assert doc["status"] == "resolved" and decode_alert(body) == r
    # an event stored before the field existed reads as firing
    old = {k: v for k, v in msgspec.json.decode(encode_alert(alert(1))).items() if k != "status"}
    assert decode_alert(msgspec.json.encode(old)).status == "firing"


def test_resolved_keeps_the_group_key_of_the_firing_event() -> None:
    assert group_key(resolved(1)) == group_key(alert(1))
    assert resolved(1).id != alert(1).id


def test_every_renderer_says_resolved() -> None:
    r = resolved(1, "critical")
    assert render.subject([r]).startswith("[RESOLVED] SPY: ")
    assert render.subject([r, alert(2)]).startswith("[WARNING] ")  # mixed group: the firing wins
    assert text_body([r]).startswith("RESOLVED (critical)  SPY")
    assert "RESOLVED (critical) · SPY" in html_body([r])
    assert render.RESOLVED_COLOR in html_body([r])
    att = slack_payload([r])["attachments"][0]
    assert att["color"] == render.RESOLVED_COLOR
    assert "(RESOLVED, was critical)" in att["blocks"][0]["text"]["text"]
    assert " RESOLVED " in console_line(r, color=False)
    assert "CRITICAL" not in console_line(r, color=False)
    # and a firing event says none of it
    f = alert(1, severity="critical")
    assert "RESOLVED" not in text_body([f]) + console_line(f, color=False)
    assert "RESOLVED" not in str(slack_payload([f])) + html_body([f])


def test_every_rendering_says_where_the_levels_are() -> None:
    levels: dict[str, Any] = {
        "regime": "negative",
        "flip_distance_pct": -0.94,
        "call_wall": 600.0,
        "put_wall": None,
    }
    a = alert(1, **levels)
    line = "negative gamma · spot -0.94% from the flip · call wall 600 · put wall n/a"
    assert render.levels_line(a) == line
    assert line in text_body([a])
    assert line in html_body([a])
    context = slack_payload([a])["attachments"][0]["blocks"][-1]["elements"]
    assert context[0]["text"] == f"*levels*: {line}"
    # the levels have their own line: they do not take the places of the rule's numbers
    assert not {k for k, _ in render.key_numbers(a)} & {"regime", "call wall", "put wall"}
    no_flip = alert(2, regime="positive", flip_distance_pct=None, call_wall=None, put_wall=1.5)
    assert render.levels_line(no_flip) == (
        "positive gamma · no flip · call wall n/a · put wall 1.5"
    )
    assert render.levels_line(alert(3)) is None  # an event without levels
    assert "levels" not in text_body([alert(3)])
