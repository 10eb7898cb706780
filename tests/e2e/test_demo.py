"""`make run` in miniature: the example config on the embedded simulator prints the demo alerts."""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.wait import WAIT_S

ROOT = Path(__file__).resolve().parents[2]
DEMO_RULES = {"flip-cross", "gex-sign", "oi-jump", "wall-shift", "repositioning"}


def test_example_config_shows_the_demo_alerts(tmp_path, redis_server):
    text = (ROOT / "config.example.yaml").read_text()
    # the file as shipped, at the shipped simulation speed, but for the fixed ops port: the
    # scenario's first event comes 10 s after the first request, and the daemon's first polls of
    # all three symbols go out together at start, so only a 10 s stall between them could miss it
    text = text.replace("listen: 127.0.0.1:9108", "listen: null")
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(text)
    shutil.copytree(ROOT / "rules.d", tmp_path / "rules.d")  # its rule_files, as shipped
    env = {**os.environ, "REDIS_URL": redis_server.url.replace("/0", "/5")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gex_alertd", "run", "--config", str(cfg)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
    )  # fmt: skip
    seen: dict[str, str] = {}
    out: list[str] = []
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    sel.register(fd, selectors.EVENT_READ)
    # read the raw pipe and split lines here: a buffered readline() can leave a line that
    # arrived in the same chunk in its buffer, where select() never reports it
    pending = b""
    # the demo's last alert is due ~60 s in (the README promises 90 s); only a failure waits
    # the whole bound
    deadline = time.monotonic() + 2.5 * WAIT_S
    try:
        while time.monotonic() < deadline and len(seen) < len(DEMO_RULES):
            if not sel.select(timeout=1):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                out.append(line + "\n")
                # the console channel's line: "<as_of> <SEVERITY> <SYMBOL> <rule>: <summary>"
                m = re.match(
                    r"^\S+Z\s+(INFO|WARNING|CRITICAL)\s+(\w+)\s+([\w-]+): (.*)$", line.strip()
                )
                if m:
                    seen.setdefault(m.group(3), m.group(4))
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
        out.append(pending.decode(errors="replace") + rest.decode(errors="replace"))
    log = "".join(out)
    assert set(seen) >= DEMO_RULES, log[-3000:]
    assert "crossed" in seen["flip-cross"]
    assert " wall moved " in seen["wall-shift"]
    assert "repositioned vs the morning's settled profile" in seen["repositioning"]
    assert proc.returncode == 0, log[-2000:]
