"""sd_notify against a real AF_UNIX datagram socket, as systemd listens for it."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gex_alertd.ops import logging as ops_logging
from gex_alertd.ops.sdnotify import SystemdNotifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def recv(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_messages_arrive_in_order(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready(status="2 symbols, 0 alerts")
    assert n.watchdog()
    assert n.status("2 symbols, 1 alert")
    assert n.reloading()
    assert n.ready()
    assert n.stopping()
    assert recv(sock) == ["READY=1", "STATUS=2 symbols, 0 alerts"]
    assert recv(sock) == ["WATCHDOG=1"]
    assert recv(sock) == ["STATUS=2 symbols, 1 alert"]
    reloading = recv(sock)
    assert reloading[0] == "RELOADING=1"
    assert reloading[1].startswith("MONOTONIC_USEC=") and int(reloading[1].split("=")[1]) > 0
    assert recv(sock) == ["READY=1"]
    assert recv(sock) == ["STOPPING=1"]
    n.close()


def test_abstract_namespace_socket() -> None:
    name = f"gex-alertd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        n = SystemdNotifier({"NOTIFY_SOCKET": f"@{name}"})
        assert n.ready()
        assert recv(sock) == ["READY=1"]
        n.close()


def test_noop_without_notify_socket() -> None:
    n = SystemdNotifier({})
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog() is False
    assert n.watchdog_interval() is None


def test_watchdog_interval_is_half_and_honours_pid(listener: tuple[socket.socket, str]) -> None:
    _, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"}
    assert SystemdNotifier(env).watchdog_interval() == 15.0
    assert SystemdNotifier({**env, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval() == 15.0
    # the watchdog belongs to another process (we are a child of the service's main process)
    assert (
        SystemdNotifier({**env, "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_interval() is None
    )
    assert SystemdNotifier({**env, "WATCHDOG_USEC": "junk"}).watchdog_interval() is None
    assert SystemdNotifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval() is None


def test_send_error_is_logged_once_never_raised_and_recovers(tmp_path: Path) -> None:
    out = io.StringIO()
    ops_logging.configure("json", "info", out)
    path = tmp_path / "notify.sock"
    n = SystemdNotifier({"NOTIFY_SOCKET": str(path)})
    assert n.ready() is False  # nobody listens yet
    assert n.watchdog() is False
    assert n.watchdog() is False
    lines = [ln for ln in out.getvalue().splitlines() if "sd_notify failed" in ln]
    assert len(lines) == 1, out.getvalue()
    # the socket appears (systemd re-executed): notifications resume, no restart needed
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        assert n.watchdog() is True
        assert recv(sock) == ["WATCHDOG=1"]
    assert "sd_notify works again" in out.getvalue()
    n.close()


async def test_run_watchdog_pings_from_the_loop_until_stopped(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    sock.setblocking(False)
    # 20 ms WatchdogSec -> a ping every 10 ms
    n = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})
    stop = asyncio.Event()
    task = asyncio.create_task(n.run_watchdog(stop))
    loop = asyncio.get_running_loop()
    pings: list[str] = []
    while len(pings) < 3:
        pings.append((await loop.sock_recv(sock, 4096)).decode())
    stop.set()
    await asyncio.wait_for(task, 5)
    assert pings == ["WATCHDOG=1"] * 3
    n.close()


async def test_run_watchdog_returns_without_watchdog(listener: tuple[socket.socket, str]) -> None:
    _, path = listener
    stop = asyncio.Event()
    await asyncio.wait_for(SystemdNotifier({"NOTIFY_SOCKET": path}).run_watchdog(stop), 5)
