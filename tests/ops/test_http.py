"""The ops endpoint on a real loopback port: /healthz status codes and a parseable /metrics
(text format, gzip and OpenMetrics by content negotiation)."""

from __future__ import annotations

import asyncio
import gzip
import logging
import platform
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

from gex_alertd import __version__, redaction
from gex_alertd.ops import http as ops_http
from gex_alertd.ops import metrics
from gex_alertd.ops.http import OpsServer
from gex_alertd.ops.listen import parse_listen
from tests.support.wait import WAIT_S, eventually

OPENMETRICS = "application/openmetrics-text; version=1.0.0"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str, *, open_metrics: bool = False) -> Samples:
    families = om_families(text) if open_metrics else text_string_to_metric_families(text)
    out = {}
    for fam in families:
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
async def metrics_url() -> AsyncIterator[str]:
    async def health() -> dict[str, Any]:
        return {"ok": True}

    server = OpsServer("127.0.0.1:0", health)
    await server.start()
    # a counter and a histogram with values, so a `_created` series would have a reason to show
    metrics.POLLS.labels("ok").inc()
    metrics.COMMIT_BATCH.observe(3)
    try:
        yield f"http://127.0.0.1:{server.port}/metrics"
    finally:
        await server.stop()


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
            # liveness: the loop answers, whatever /healthz reports (a restart fixes neither
            # a Redis outage nor a channel's 410)
            async with http.get(f"{base}/livez") as r:
                assert r.status == 200 and (await r.json()) == {"ok": True, "loop": True}

            async with http.get(f"{base}/metrics") as r:
                assert r.status == 200
                assert r.headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
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


async def test_metrics_plain_text_by_default(metrics_url: str) -> None:
    # no Accept and no Accept-Encoding at all: what a bare `curl` gets
    async with aiohttp.ClientSession(skip_auto_headers=("Accept", "Accept-Encoding")) as http:
        async with http.get(metrics_url) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
            assert "Content-Encoding" not in r.headers
            text = await r.text()
    assert ("gexalertd_polls_total", (("status", "ok"),)) in samples(text)
    assert "# EOF" not in text


async def test_metrics_gzip_when_asked(metrics_url: str) -> None:
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        async with http.get(metrics_url, headers={"Accept-Encoding": "gzip"}) as r:
            assert r.status == 200
            assert r.headers["Content-Encoding"] == "gzip"
            assert r.headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
            raw = await r.read()
    assert raw[:2] == b"\x1f\x8b"
    assert ("gexalertd_polls_total", (("status", "ok"),)) in samples(gzip.decompress(raw).decode())


async def test_metrics_openmetrics_when_asked(metrics_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(metrics_url, headers={"Accept": OPENMETRICS}) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith(OPENMETRICS + ";")
            text = await r.text()
    assert text.endswith("# EOF\n")
    assert ("gexalertd_polls_total", (("status", "ok"),)) in samples(text, open_metrics=True)


async def test_scrape_has_no_created_series(metrics_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(metrics_url) as r:
            plain = samples(await r.text())
        async with http.get(metrics_url, headers={"Accept": OPENMETRICS}) as r:
            om = samples(await r.text(), open_metrics=True)
    for scrape in (plain, om):
        assert ("gexalertd_commit_batch_size_count", ()) in scrape
        assert [name for name, _ in scrape if name.endswith("_created")] == []


async def test_scrape_has_process_metrics_and_build_info(metrics_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(metrics_url) as r:
            scrape = samples(await r.text())
    labels = (("python", platform.python_version()), ("version", __version__))
    assert scrape[("gexalertd_build_info", labels)] == 1
    names = {name for name, _ in scrape}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= names
    assert {"process_start_time_seconds", "process_open_fds", "python_info"} <= names


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
    # digits to str.isdigit(), not to int(): the error named int(), not what to write
    for port in ("²", "٩١٠٨"):
        with pytest.raises(ValueError, match=r"ops\.listen: expected host:port"):
            parse_listen(f"127.0.0.1:{port}")


async def _closed_by_server(sock: socket.socket) -> bool:
    """Read what comes until the server closes the connection (True), or it resets it."""
    loop = asyncio.get_running_loop()
    try:
        while await loop.sock_recv(sock, 4096):
            pass
    except ConnectionResetError:
        pass
    return True


async def test_an_idle_or_dripping_connection_is_closed_not_held_for_an_hour(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # aiohttp's request handler keeps a connection that sends no request (or a request's
    # headers a byte at a time) for its default keep-alive of 3,630 s: each such client held
    # one of the daemon's file descriptors, which Redis and the upstream also need
    monkeypatch.setattr(ops_http, "KEEPALIVE_S", 0.5)

    async def health() -> dict[str, Any]:
        return {"ok": True}

    server = OpsServer("127.0.0.1:0", health)
    await server.start()
    idle, dripping = socket.socket(), socket.socket()
    try:
        for sock in (idle, dripping):
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        await asyncio.get_running_loop().sock_sendall(dripping, b"GET /healthz HTTP/1.1\r\nX-A: ")

        async def drip() -> None:
            while True:
                await asyncio.sleep(0.1)
                try:
                    dripping.send(b"a")
                except OSError:
                    return

        dripper = asyncio.create_task(drip())
        try:
            async with asyncio.timeout(WAIT_S):
                assert await _closed_by_server(idle)
                assert await _closed_by_server(dripping)
        finally:
            dripper.cancel()
    finally:
        idle.close()
        dripping.close()
        await server.stop()


async def test_a_malformed_request_is_a_400_with_no_traceback_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # aiohttp logged each one as an ERROR with a traceback ("Error handling request"), for
    # anyone who can connect (the ops token is checked after the request is parsed): a journal
    # flooded with tracebacks at a client's will, quoting the client's bytes
    async def health() -> dict[str, Any]:
        return {"ok": True}

    bad = [
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ]

    async def boom(_: web.Request) -> web.Response:
        raise RuntimeError("a bug of ours")

    def mount(app: web.Application) -> None:
        app.router.add_get("/boom", boom)

    server = OpsServer("127.0.0.1:0", health, mounts=(mount,))
    await server.start()
    try:
        with caplog.at_level(logging.DEBUG):
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{server.port}/boom") as resp:
                    assert resp.status == 500
            ours = [r for r in caplog.records if r.exc_info]
            assert [type(r.exc_info[1]) for r in ours if r.exc_info] == [RuntimeError]
            caplog.clear()  # a bug of ours keeps its traceback; a client's garbage gets none
            for request in bad:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(request)
                async with asyncio.timeout(WAIT_S):
                    answer = await reader.read()  # to the close: aiohttp closes after a 400
                writer.close()
                assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request"), answer[:80]
    finally:
        await server.stop()
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
    assert noisy == [], [r.getMessage() for r in noisy]


async def test_connections_past_the_bound_are_closed_at_once_and_others_still_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # aiohttp accepts any number of connections: each idle or slow client held a file
    # descriptor (for KEEPALIVE_S), and ~1,000 of them (systemd's default soft limit is 1,024)
    # left none for Redis, the upstream and the receivers
    monkeypatch.setattr(ops_http, "MAX_CONNECTIONS", 3)

    async def health() -> dict[str, Any]:
        return {"ok": True}

    server = OpsServer("127.0.0.1:0", health)
    await server.start()
    held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        async with asyncio.timeout(WAIT_S):
            assert await reader.read() == b""  # closed unanswered: the bound is reached
        writer.close()
        held.pop()[1].close()  # one leaves: a place is free again

        async def served() -> bool:
            try:
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"http://127.0.0.1:{server.port}/healthz") as resp:
                        return resp.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(served, "a request served once a place is free")
    finally:
        for _, w in held:
            w.close()
        await server.stop()
