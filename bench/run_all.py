"""`make bench`: every `bench/bench_*.py`, one after the other, each in its own process.

Convention for a bench module (`bench/bench_<name>.py`):
  - it exposes `main(argv: list[str] | None = None)`, parses its own options with argparse, and
    accepts at least `--json PATH` (write its figures as one JSON object, for comparing runs
    across commits) and `--quick` (a shorter run, still meaningful, that `make bench` uses:
    sized to take well under half of the bench's limit below on a quiet 2-core machine, so it
    still finishes when the machine is busy; any phase whose time grows with load has a
    deadline, and the bench reports what it actually did);
  - it prints one rich table of its figures, each timing next to a baseline measured in the
    same run (absolute numbers depend on the machine and on its load);
  - it returns normally on success; an exception or a non-zero exit means it failed.

This runner is tolerant: a bench that fails, hangs past its time limit, or does not follow the
convention yet (a `main()` without `argv`, an unknown `--quick`) is reported and the others
still run. Each runs in a subprocess, so a crash or a leaked event loop in one cannot affect
the next, and figures are not skewed by a previous bench's garbage. At the end a summary
table lists every bench with its status and wall time, and `--json PATH` (default
`bench/results/latest.json`) collects every bench's JSON under its name.

    python -m bench.run_all [--full] [--only pipeline,scale] [--json PATH] [--timeout S]

`make bench` runs every bench with `--quick`; `--full` runs each at its own default (full) size,
which takes about 7 minutes on a 2-core machine and much longer on a busy one, so each bench then
gets FULL_LIMIT_S and there is no overall budget.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# full-run order: cheap and independent first, so a late failure still leaves most figures
ORDER = [
    "cpu", "storage", "pipeline", "alert_latency", "replay", "scale", "overload", "commit",
    "simulator", "outcomes", "web", "silences", "failover",
    "takeover", "cluster",
]  # fmt: skip
# per-bench wall limits (s) for the default (`--quick`) run. Each bench's quick size takes well
# under half of its limit on a quiet machine, so a busy one (2-3x slower) still fits; and a
# bench is never given more than what is left of the overall budget, so the whole run is bounded
LIMITS = {
    "scale": 240.0, "replay": 150.0, "pipeline": 150.0, "overload": 120.0, "web": 200.0,
    "failover": 200.0, "cluster": 180.0,
}  # fmt: skip
DEFAULT_LIMIT = 120.0
TOTAL_BUDGET_S = 570.0  # the whole `make bench` must end inside 570 s on a busy 2-core box
FULL_LIMIT_S = 900.0  # per bench with --full

# Calls the module's main with argv when it takes one, else through sys.argv, so benches that
# predate the convention still run. SystemExit(0/None) is success, as argparse's --help is.
_SHIM = """
import asyncio, inspect, sys, importlib
mod = importlib.import_module(sys.argv[1])
argv = sys.argv[2:]
main = getattr(mod, "main", None) or getattr(mod, "cli", None)
if main is None:
    raise SystemExit(f"{sys.argv[1]} has no main()")
params = inspect.signature(main).parameters
if params:
    result = main(argv)
else:
    sys.argv = [sys.argv[1], *argv]
    result = main()
if inspect.isawaitable(result):
    asyncio.run(result)
"""


def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def discover() -> list[str]:
    found = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    ranked = [n for n in ORDER if n in found]
    return ranked + [n for n in found if n not in ranked]


def _run(name: str, args: list[str], timeout: float) -> tuple[int | None, float, str]:
    started = time.monotonic()
    cmd = [sys.executable, "-c", _SHIM, f"bench.bench_{name}", *args]
    # the bench's own output goes straight to the terminal (its table is the point);
    # stderr is captured too, so a failure can be summarised
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stderr=err, start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the bench and whatever servers it started
            proc.wait()
            rc = None
        err.seek(0)
        tail = err.read().decode(errors="replace")
    sys.stderr.write(tail[-4000:] if rc != 0 else "")
    return rc, time.monotonic() - started, tail


def run_one(name: str, quick: bool, timeout: float, out_dir: Path) -> dict[str, Any]:
    json_path = out_dir / f"{name}.json"
    args = ["--json", str(json_path)] + (["--quick"] if quick else [])
    rc, took, err = _run(name, args, timeout)
    if rc == 2 and "unrecognized arguments" in err:
        # predates the convention: run it with its defaults, without JSON, in what is left
        rc, took2, err = _run(name, [], max(timeout - took, 1.0))
        took += took2
    result: dict[str, Any] = {
        "status": "ok" if rc == 0 else "failed",
        "seconds": round(took, 1),
        "limit_s": round(timeout),
    }
    if rc is None:
        result["status"] = f"timed out after {timeout:.0f} s"
    elif rc != 0:
        last = [ln for ln in err.strip().splitlines() if ln.strip()]
        result["error"] = last[-1][:200] if last else f"exit status {rc}"
    if json_path.exists():
        try:
            result["figures"] = json.loads(json_path.read_text())
        except ValueError as exc:
            result["error"] = f"bad --json output: {exc}"
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run every bench/bench_*.py")
    ap.add_argument(
        "--full", action="store_true",
        help=f"every bench at its full size, {FULL_LIMIT_S:.0f} s each, no overall budget",
    )  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="the default; kept for old scripts")
    ap.add_argument("--only", default="", help="comma-separated bench names (pipeline,scale)")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "latest.json")
    ap.add_argument("--timeout", type=float, default=None, help="per-bench limit (s)")
    args = ap.parse_args(argv)
    console = Console(width=120)
    names = discover()
    if args.only:
        wanted = [n.strip().removeprefix("bench_") for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            console.print(f"[red]unknown bench(es): {', '.join(unknown)}; have {names}")
            return 2
        names = wanted
    info = machine()
    console.rule(f"gex-alertd benchmarks  {info['date']}")
    console.print(f"{info['cpus']} CPUs ({info['cpu_model']}), Python {info['python']}")
    results: dict[str, Any] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gex-bench-") as tmp:
        for name in names:
            if args.full:
                limit = args.timeout or FULL_LIMIT_S
            else:
                left = TOTAL_BUDGET_S - (time.monotonic() - started)
                if left < 20:
                    results[name] = {"status": "skipped: out of time budget", "seconds": 0}
                    continue
                limit = min(args.timeout or LIMITS.get(name, DEFAULT_LIMIT), left)
            console.rule(f"bench_{name}")
            results[name] = r = run_one(name, not args.full, limit, Path(tmp))
            # the wall time of each bench as it ends, so a slow one shows up before the summary
            console.print(
                f"bench_{name}: {r['status']}, {r['seconds']:.1f} s of its {limit:.0f} s limit "
                f"(run total {time.monotonic() - started:.0f} s)",
                highlight=False,
            )
    table = Table(title="bench summary")
    for col in ("bench", "status", "wall s", "limit s", "note"):
        table.add_column(col)
    for name, r in results.items():
        color = "green" if r["status"] == "ok" else "red"
        table.add_row(
            name, f"[{color}]{r['status']}", f"{r['seconds']:.1f}", str(r.get("limit_s", "")),
            r.get("error", ""),
        )  # fmt: skip
    console.print(table)
    total = time.monotonic() - started
    size = "full" if args.full else f"quick, budget {TOTAL_BUDGET_S:.0f} s"
    console.print(f"total {total:.0f} s ({size}); load average at the end {_loadavg()}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    info["mode"] = "full" if args.full else "quick"
    info["total_s"] = round(total, 1)
    args.json.write_text(json.dumps({"machine": info, "benches": results}, indent=2) + "\n")
    console.print(f"figures: {args.json}")
    return 0 if all(r["status"] == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
