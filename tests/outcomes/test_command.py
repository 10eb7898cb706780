"""`gex-alertd outcomes` over a real Redis: table, JSON, CSV, plot, sources, bad input."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from gex_alertd.cli import main
from tests.outcomes.streams import alert, fire, store_path
from tests.outcomes.test_measure import MIN, MONDAY, et

T0 = et(*MONDAY, 9, 30)


def _config(tmp_path: Path, redis_url: str) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"""
redis: {{url: "{redis_url}"}}
watch: {{symbols: [SPY]}}
channels: {{tty: {{type: console}}}}
rules:
  - {{name: flip, type: flip_cross, symbols: [SPY], channels: [tty]}}
  - {{name: sign, type: net_gex_sign, symbols: [SPY], channels: [tty]}}
outcomes: {{horizons: [5m, 30m, close]}}
"""
    )
    return cfg


async def _populate(url: str) -> list[str]:
    r = aioredis.Redis.from_url(url)
    try:
        await r.flushall()
        times = [T0 + i * MIN for i in range(391)]  # the whole session, a snapshot a minute
        spots = [100.0 + 0.5 * ((i * 7) % 11) / 11 + 0.002 * i for i in range(391)]
        nets = [1e9 if i < 200 else -1e9 for i in range(391)]
        await store_path(r, "SPY", times, spots, nets, strikes=5)
        ids = []
        for k, m in enumerate((15, 45, 120, 200, 300)):
            ev = alert(
                T0 + m * MIN, details={"direction": "up" if k % 2 else "down", "flip": 100.2}
            )
            await fire(r, ev, ["tty"])
            ids.append(ev.id)
        sign = alert(T0 + 200 * MIN, rule="sign", type_="net_gex_sign",
                     details={"direction": "to_negative"})  # fmt: skip
        await fire(r, sign, ["tty"])
        return [*ids, sign.id]
    finally:
        await r.aclose()


def test_report_formats_are_deterministic_for_a_seed(tmp_path: Path, redis_url: str) -> None:
    ids = asyncio.run(_populate(redis_url))
    cfg = _config(tmp_path, redis_url)
    runner = CliRunner()
    args = ["outcomes", "--config", str(cfg), "--seed", "7", "--baseline", "300"]
    first = runner.invoke(main, [*args, "--json"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(main, [*args, "--json"])
    assert again.stdout == first.stdout
    other_seed = runner.invoke(main, [*args[:-4], "--seed", "8", "--baseline", "300", "--json"])
    report = json.loads(first.stdout)
    assert {a["id"] for a in report["alerts"]} == set(ids)
    rows = {(r["rule"], r["horizon"]): r for r in report["rows"]}
    assert set(rows) == {(r, h) for r in ("flip", "sign") for h in ("5m", "30m", "close")}
    assert rows[("flip", "5m")]["alerts"]["n"] == 5 and rows[("flip", "5m")]["signed"]
    assert rows[("flip", "5m")]["baseline"]["n"] == 300
    # the seed is used: other random moments, another baseline
    other = {(r["rule"], r["horizon"]): r for r in json.loads(other_seed.stdout)["rows"]}
    assert other[("flip", "30m")]["baseline"] != rows[("flip", "30m")]["baseline"]
    (regime,) = report["regime"]
    assert regime["symbol"] == "SPY" and regime["positive_returns"] == 200
    assert regime["negative_returns"] == 190

    csv_out = runner.invoke(main, [*args, "--csv", "--rules", "sign"])
    lines = csv_out.stdout.splitlines()
    assert lines[0].startswith("rule,type,horizon,signed,n,hit_rate")
    assert [ln.split(",")[2] for ln in lines[1:]] == ["5m", "30m", "close"]

    png = tmp_path / "out.png"
    table = runner.invoke(main, [*args, "--plot", str(png), "--horizons", "5m,close"])
    assert table.exit_code == 0, table.output
    assert "Alert outcomes" in table.stdout and "net GEX sign" in table.stdout
    assert "describe the simulator, not markets" in " ".join(table.stdout.split())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_alerts_from_a_replay_file_and_bad_input(tmp_path: Path, redis_url: str) -> None:
    asyncio.run(_populate(redis_url))
    cfg = _config(tmp_path, redis_url)
    ev = alert(T0 + 60 * MIN, rule="filed", details={"direction": "down"})
    # a path longer than a terminal line: the file:line is still printed whole
    jsonl = tmp_path / ("d" * 90) / "alerts.jsonl"
    jsonl.parent.mkdir()
    jsonl.write_bytes(msgspec.json.encode(ev) + b"\nnot json\n")
    runner = CliRunner()
    out = runner.invoke(main, ["outcomes", "--config", str(cfg), "--alerts", str(jsonl), "--json"])
    assert out.exit_code == 0, out.output
    assert [a["id"] for a in json.loads(out.stdout)["alerts"]] == [ev.id]
    assert f"{jsonl}:2" in out.stderr and "not an alert event" in out.stderr

    bad = runner.invoke(main, ["outcomes", "--config", str(cfg), "--horizons", "5m,soon"])
    assert bad.exit_code == 64 and "'soon'" in bad.output and "Traceback" not in bad.output
    backwards = ["outcomes", "--config", str(cfg), "--from", "2026-05-12", "--to", "2026-05-11"]
    swapped = runner.invoke(main, backwards)
    assert swapped.exit_code == 64 and "--from is after --to" in swapped.output
    missing = runner.invoke(main, ["outcomes", "--config", str(cfg), "--alerts", "nope.jsonl"])
    assert missing.exit_code == 64 and "no such file" in missing.output

    replayed = runner.invoke(
        main, ["outcomes", "--config", str(cfg), "--alerts", "replay", "--json"]
    )
    assert replayed.exit_code == 0, replayed.output
    assert all(a["rule"] in ("flip", "sign") for a in json.loads(replayed.stdout)["alerts"])


def test_one_date_as_from_and_to_reports_that_day(tmp_path: Path, redis_url: str) -> None:
    """`--to` is inclusive: a date there takes in its whole day (its midnight left out every
    alert of the day that `--from` names)."""
    ids = asyncio.run(_populate(redis_url))
    cfg = _config(tmp_path, redis_url)
    day = date(*MONDAY).isoformat()
    args = ["outcomes", "--config", str(cfg), "--from", day, "--to", day, "--baseline", "0"]
    out = CliRunner().invoke(main, [*args, "--json"])
    assert out.exit_code == 0, out.output
    assert {a["id"] for a in json.loads(out.stdout)["alerts"]} == set(ids)


def test_the_table_is_whole_on_a_pipe_or_a_narrow_terminal(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`outcomes > report.txt` (no terminal: 80 columns) or an 80-column terminal printed the
    127-column table with cells cut to '…' (`-0.…`): figures lost. It is printed at its own
    width; a terminal's line wrap is the reader's to undo, an ellipsis is not."""
    asyncio.run(_populate(redis_url))
    cfg = _config(tmp_path, redis_url)
    monkeypatch.setenv("COLUMNS", "80")
    out = CliRunner().invoke(main, ["outcomes", "--config", str(cfg), "--baseline", "100"])
    assert out.exit_code == 0, out.output
    assert "…" not in out.stdout, out.stdout
    (header,) = [ln for ln in out.stdout.splitlines() if "base mean" in ln]
    assert "vol a/b" in header and "gaps" in header
