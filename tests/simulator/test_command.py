"""`gex-alertd simulate` as a real process: serves, answers the SDK, stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from flashalpha import FlashAlpha

from gex_alertd.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_simulate_serves_until_interrupted(tmp_path: Path) -> None:
    port = _free_port()
    exe = Path(sys.executable).parent / "gex-alertd"
    proc = subprocess.Popen(
        [str(exe), "simulate", "--port", str(port), "--seed", "3", "--api-key", "cli-key",
         "--symbols", "SPY,QQQ", "--scenario", "demo", "--cache-s", "0", "--speed", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    try:
        fa = FlashAlpha("cli-key", base_url=f"http://127.0.0.1:{port}", timeout=5)
        deadline = time.monotonic() + 60  # a loaded CI box can be slow to import everything
        while True:
            try:
                data = fa.flow_gex("QQQ")
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("simulate did not come up") from None
                time.sleep(0.05)
        assert data["symbol"] == "QQQ" and len(data["strikes"]) == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{port}".encode() in out


def test_simulate_bad_scenario_names_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("events:\n  - {at: 1, do: block, symbol: SPY}\n")
    result = CliRunner().invoke(main, ["simulate", "--scenario", str(bad), "--port", "0"])
    assert result.exit_code != 0
    assert "events[0].contracts" in result.output and str(bad) in result.output
    result = CliRunner().invoke(main, ["simulate", "--speed", "0"])
    assert result.exit_code != 0 and "speed" in result.output
