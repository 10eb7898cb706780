from __future__ import annotations

import msgspec

from gex_alertd.model import decode_alert, encode_alert
from gex_alertd.notify import render
from tests.notify.support import alert


def test_single_webhook_body_is_exactly_the_contract_event() -> None:
    a = alert(1)
    msg_id, body = render.webhook_body([a])
    assert msg_id == a.id
    assert body == encode_alert(a)
    assert decode_alert(body) == a


def test_group_body_lists_members_with_a_stable_id() -> None:
    alerts = [alert(1, "SPY"), alert(2, "QQQ", "critical"), alert(3, "IWM")]
    gid, body = render.webhook_body(alerts)
    gid2, _ = render.webhook_body(list(reversed(alerts)))
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
    p = render.slack_payload([alert(1, severity="critical")])
    assert p["text"].startswith("[CRITICAL] SPY")
    att = p["attachments"][0]
    assert att["color"] == render.SEVERITY_COLOR["critical"]
    kinds = [b["type"] for b in att["blocks"]]
    assert kinds == ["section", "section", "context"]
    fields = " ".join(f["text"] for f in att["blocks"][1]["fields"])
    assert "513.10" in fields and "-$1.25B" in fields
    assert "id spy-flip:SPY:" in att["blocks"][2]["elements"][0]["text"]
    grp = render.slack_payload([alert(1), alert(2, "QQQ")])
    assert grp["blocks"][0]["type"] == "header" and len(grp["attachments"]) == 2


def test_text_and_html_bodies_carry_the_same_facts() -> None:
    a = alert(1)
    text, html = render.text_body([a]), render.html_body([a])
    for fact in ("SPY", a.summary, "513.10", "512.40", a.id):
        assert fact in text and fact in html
    assert "<script" not in render.html_body([msgspec.structs.replace(a, summary="<script>")])


def test_console_line_colour_only_when_asked() -> None:
    a = alert(1)
    plain = render.console_line(a, color=False)
    coloured = render.console_line(a, color=True)
    assert "\x1b[" not in plain and "\n" not in plain
    assert "\x1b[33m" in coloured
    assert "SPY" in plain and a.id in plain
