"""The ops endpoint on a real loopback port: /healthz status codes and a parseable /metrics."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from gex_alertd import redaction
from gex_alertd.ops import metrics
from gex_alertd.ops.http import OpsServer, parse_listen


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_healthz_and_metrics() -> None:
    state: dict[str, Any] = {"ok": True, "redis": "ok", "last_poll_age_s": {"SPY": 1.5}}

    async def health() -> dict[str, Any]:
        return dict(state)

    server = OpsServer("127.0.0.1:0", health)
    await server.start()
    try:
        assert server.port
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
                assert (await r.json())["last_poll_age_s"] == {"SPY": 1.5}
            state["ok"] = False
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 503

            async with http.get(f"{base}/metrics") as r:
                assert r.status == 200
                assert r.headers["Content-Type"] == CONTENT_TYPE_LATEST
                before = samples(await r.text())
            metrics.POLLS.labels(status="ok").inc()
            metrics.ALERTS_FIRED.labels(rule="http-test").inc(2)
            metrics.REQUEST_LATENCY.observe(0.03)
            async with http.get(f"{base}/metrics") as r:
                after = samples(await r.text())
    finally:
        await server.stop()

    key = ("gexalertd_polls_total", (("status", "ok"),))
    assert after[key] == before.get(key, 0) + 1
    fired = ("gexalertd_alerts_fired_total", (("rule", "http-test"),))
    assert after[fired] == before.get(fired, 0) + 2
    count = ("gexalertd_request_latency_seconds_count", ())
    assert after[count] == before.get(count, 0) + 1


async def test_healthz_failure_is_503_and_redacted() -> None:
    redaction.register("hunter2-ops-secret")

    async def health() -> dict[str, Any]:
        raise ConnectionError("redis://u:hunter2-ops-secret@db:6379 refused")

    server = OpsServer("127.0.0.1:0", health)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.port}/healthz") as r:
                assert r.status == 503
                body = await r.text()
    finally:
        await server.stop()
    assert "ConnectionError" in body and "hunter2-ops-secret" not in body


async def test_port_in_use_names_the_address() -> None:
    async def health() -> dict[str, Any]:
        return {"ok": True}

    first = OpsServer("127.0.0.1:0", health)
    await first.start()
    try:
        second = OpsServer(f"127.0.0.1:{first.port}", health)
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            await second.start()
    finally:
        await first.stop()


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_listen("[::1]:9108") == ("::1", 9108)
    assert parse_listen(":9108") == ("127.0.0.1", 9108)
    with pytest.raises(ValueError, match=r"ops\.listen: expected host:port, got 'localhost'"):
        parse_listen("localhost")
