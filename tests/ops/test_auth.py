"""`ops.auth_token`: a bind beyond loopback needs it (config check, exit 2, and the server
itself), and a configured token guards every request of the ops server (bearer header, or
the cookie `?token=` sets), on a real loopback server."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gex_alertd import config, redaction
from gex_alertd.config import ConfigError
from gex_alertd.ops.auth import COOKIE
from gex_alertd.ops.http import OpsServer
from gex_alertd.ops.listen import bind_problem, is_loopback

TOKEN = "0123456789abcdef-ops-token"


async def _health() -> dict[str, Any]:
    return {"ok": True}


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("example.org", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert (bind_problem(host, None) is None) is loopback
    assert bind_problem(host, TOKEN) is None


def _write(tmp_path: Path, ops: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(textwrap.dedent(f"watch: {{symbols: [SPY]}}\nops: {ops}\n"))
    return p


def test_a_bind_beyond_loopback_without_a_token_is_refused(tmp_path: Path) -> None:
    p = _write(tmp_path, '{listen: "0.0.0.0:9108"}')
    with pytest.raises(ConfigError) as err:
        config.load(p)
    assert err.value.problems == [
        "ops.auth_token: required when listening on 0.0.0.0, which is not a loopback address"
        " (line 2)"
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "gex_alertd", "check", "--offline", "--config", str(p)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "ops.auth_token: required when listening on 0.0.0.0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_loopback_needs_no_token_and_a_bad_listen_or_token_is_a_problem(tmp_path: Path) -> None:
    assert config.load(_write(tmp_path, '{listen: "[::1]:9108"}')).ops.auth_token is None
    with pytest.raises(ConfigError) as err:
        config.load(_write(tmp_path, '{listen: "0.0.0.0:9108", auth_token: "short"}'))
    assert err.value.problems[0].startswith("ops.auth_token: expected 16 to 256 characters")
    assert "short" not in err.value.problems[0]
    with pytest.raises(ConfigError) as err:
        config.load(_write(tmp_path, '{listen: "nowhere"}'))
    assert err.value.problems == ["ops.listen: expected host:port, got 'nowhere' (line 2)"]


def test_the_token_comes_from_a_variable_and_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPS_TOKEN", TOKEN)
    cfg = config.load(_write(tmp_path, '{listen: "0.0.0.0:9108", auth_token: "${OPS_TOKEN}"}'))
    assert cfg.ops.auth_token == TOKEN
    assert TOKEN not in redaction.redact(f"Authorization: Bearer {TOKEN}")


def test_the_server_refuses_a_bind_beyond_loopback_without_a_token() -> None:
    with pytest.raises(ValueError, match=r"ops\.auth_token: required when listening on 0\.0\.0\.0"):
        OpsServer("0.0.0.0:0", _health)


@pytest.fixture
async def guarded() -> AsyncIterator[str]:
    server = OpsServer("127.0.0.1:0", _health, auth_token=TOKEN)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


async def test_every_request_needs_the_token(guarded: str) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/metrics"):
            async with http.get(guarded + path) as resp:
                assert resp.status == 401
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                assert TOKEN not in await resp.text()
        bad = {"Authorization": f"Bearer {TOKEN}x"}
        async with http.get(guarded + "/healthz", headers=bad) as resp:
            assert resp.status == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        async with http.get(guarded + "/healthz", headers=good) as resp:
            assert resp.status == 200
            assert COOKIE not in resp.cookies  # a bearer client gets no cookie
        async with http.get(guarded + "/healthz?token=wrong-token-0123456789") as resp:
            assert resp.status == 401


async def test_the_query_token_sets_a_strict_http_only_cookie(guarded: str) -> None:
    jar = aiohttp.CookieJar(unsafe=True)  # keep cookies of a bare IP host
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(f"{guarded}/healthz?token={TOKEN}") as resp:
            assert resp.status == 200
            morsel = resp.cookies[COOKIE]
            assert morsel.value == TOKEN
            assert morsel["httponly"] is True
            assert morsel["samesite"] == "Strict"
            assert morsel["path"] == "/"
        async with http.get(guarded + "/metrics") as resp:  # the cookie alone now
            assert resp.status == 200
    async with aiohttp.ClientSession() as http:
        async with http.get(guarded + "/metrics", cookies={COOKIE: "not-the-token-123456"}) as r:
            assert r.status == 401
