"""Where the real daemon's CPU goes: `gex-alertd run` as the pipeline bench runs it, measured
over one window, optionally sampled by py-spy or counted by strace.

    python -m bench.sample_daemon [--symbols 200] [--interval 0.02] [--jitter 0] [--seconds 8]
                                  [--settle 2] [--py-spy OUT.txt [--native] [--top 40]]
                                  [--strace OUT.txt] [--valgrind OUT [--ll-bytes N]]

Same upstream (`bench.replay_upstream`, on CPU 0 with redis-server), same config and rules
(`bench_pipeline.config_tree`), the daemon on CPU 1, never paused. After every symbol is stored
once and `--settle` seconds more, it prints the snapshots stored in the window (XINFO STREAM
entries-added, which trimming does not hide), the daemon's cores and its CPU ms per stored snapshot
(utime + stime from /proc), and of that the system CPU and the minor page faults per stored
snapshot (the kernel's side, which callgrind does not count). With `--py-spy` the window is a
`py-spy record` of the process (raw collapsed stacks, 250 Hz; `--native` adds the C frames),
summarized by function at the end; with `--strace` an `strace -c -f` of it (system calls by count:
getpid() is every asyncio.get_running_loop() on Python 3.11). Neither tool is a dependency: py-spy
is `pip install py-spy`, strace the Debian package. Both slow the daemon down: take its rate and
CPU from a plain run.

With `--valgrind OUT` the daemon runs under `valgrind --tool=callgrind --cache-sim=yes` with
instrumentation off until it is warm (every symbol stored once), then on for `--settle`
seconds (caches warm), then the counts are zeroed and dumped after the window into OUT.<pid>.1:
instructions (Ir) and simulated D1/LL misses, which the load on the box does not move. Divide
by the snapshots stored in the window (printed) and compare two runs with `callgrind_annotate
--inclusive=yes`. Everything runs 100-200x slower under it while the daemon's periodic work
keeps its wall-clock periods (so it weighs 100-200x more per snapshot): `--hot-path` runs the
poll path alone (`bench.hot_path`) in place of the daemon. Give a window of a few hundred
snapshots.

Not a `bench_*` module (run_all does not run it): a tool for looking, not a figure for
`make bench`. bench/README.md (pipeline) has what it found.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import redis

from bench.bench_pipeline import (
    FAST_INTERVAL_S,
    TICK,
    DaemonProcess,
    config_tree,
    proc_cpu,
    proc_stat,
    start_redis,
    start_upstream,
    stop,
)
from bench.replay_upstream import symbol_names
from gex_alertd import keys


def stored(r: redis.Redis, symbols: list[str], key: Callable[[str], str] = keys.snap) -> int:
    """Entries ever added to the symbols' streams (trimmed ones included); `key` names the
    stream (keys.outbox: the alerts the commits enqueued)."""
    pipe = r.pipeline(transaction=False)
    for s in symbols:
        pipe.xinfo_stream(key(s))
    replies = pipe.execute(raise_on_error=False)
    return sum(int(x["entries-added"]) for x in replies if isinstance(x, dict))


def kernel_side(pid: int) -> tuple[int, float]:
    """(minor page faults, system CPU seconds) of a process so far: what callgrind, which
    counts user space only, cannot see."""
    fields = proc_stat(pid)
    return int(fields[7]), int(fields[12]) / TICK


def _name(frame: str) -> str:
    """py-spy's "func (path/to/file.py:123)" as "func (file.py)"."""
    func, _, where = frame.rpartition(" (")
    return f"{func} ({where.rstrip(')').rsplit('/', 1)[-1].split(':')[0]})"


def summarize(path: Path, top: int) -> None:
    """The functions of a py-spy raw file by share of samples: inclusive (on the stack) and own
    (at its top), the `top` largest of each."""
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        names = [_name(f) for f in stack.split(";")]
        inclusive.update(dict.fromkeys(names, n))
        own[names[-1]] += n
    for title, counts in (("inclusive", inclusive), ("own", own)):
        print(f"--- {title}, of {total} samples")
        # the frames every sample has (the CLI, asyncio.run, the loop) say nothing
        shown = [(k, n) for k, n in counts.most_common() if n < 0.99 * total][:top]
        for name, n in shown:
            print(f"{100 * n / total:5.1f}%  {name}")


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        hint = "pip install py-spy" if name == "py-spy" else f"apt-get install {name}"
        raise SystemExit(f"{name} not found ({hint})")
    return found


def callgrind(pid: int, *flags: str) -> None:
    subprocess.run([tool("callgrind_control"), *flags, str(pid)], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def wrap(args: argparse.Namespace) -> tuple[str, ...]:
    """What the daemon's command line is run by: callgrind, and the poll path alone
    (`bench.hot_path`, which takes the daemon's own words and reads only `--config`)."""
    out: tuple[str, ...] = ()
    if args.valgrind is not None:
        ll = f"--LL={args.ll_bytes},16,64"
        out = (tool("valgrind"), "--tool=callgrind", "--cache-sim=yes", "--instr-atstart=no",
               "--D1=32768,8,64", ll, f"--callgrind-out-file={args.valgrind}.%p")  # fmt: skip
    if args.hot_path:
        out += (sys.executable, "-m", "bench.hot_path")
    return out


def window(args: argparse.Namespace, pid: int) -> None:
    if args.valgrind is not None:  # the counts of the window alone (zeroed at its start)
        callgrind(pid, "-z")
        time.sleep(args.seconds)
        callgrind(pid, "-d")
    elif args.py_spy is not None:
        cmd = [tool("py-spy"), "record", "-p", str(pid), "-d", str(int(args.seconds)), "-r"]
        cmd += ["250", "-f", "raw", "-o", str(args.py_spy)] + (["--native"] if args.native else [])
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elif args.strace is not None:
        cmd = [tool("strace"), "-c", "-f", "-p", str(pid), "-o", str(args.strace)]
        proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        time.sleep(args.seconds)
        proc.send_signal(2)  # SIGINT: strace detaches and writes its table
        proc.wait(30)
    else:
        time.sleep(args.seconds)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--interval", type=float, default=FAST_INTERVAL_S)
    ap.add_argument("--jitter", type=float, default=0.0)
    ap.add_argument("--seconds", type=float, default=8.0, help="the measured window")
    ap.add_argument("--settle", type=float, default=2.0, help="after every symbol is stored")
    ap.add_argument("--py-spy", type=Path, default=None, help="py-spy raw stacks into this file")
    ap.add_argument("--native", action="store_true", help="with --py-spy: the C frames too")
    ap.add_argument("--strace", type=Path, default=None, help="strace -c table into this file")
    ap.add_argument("--top", type=int, default=40, help="with --py-spy: functions listed")
    ap.add_argument("--valgrind", type=Path, default=None, help="callgrind counts into OUT.<pid>.1")
    ap.add_argument("--ll-bytes", type=int, default=2 << 20, help="with --valgrind: the LL cache")
    ap.add_argument(
        "--warm-cycles",
        type=int,
        default=4,
        help="with --valgrind: snapshots every stream has before counting",
    )
    ap.add_argument("--hot-path", action="store_true", help="the poll path alone (bench.hot_path)")
    ap.add_argument(
        "--no-outcomes", action="store_true", help="the live outcome duty off (as bench_overload)"
    )
    ap.add_argument("--cooldown", default=None, help="every rule's cooldown (default the bench's)")
    args = ap.parse_args(argv)
    symbols = symbol_names(args.symbols)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        upstream, base = start_upstream(args.symbols, cpu=0)
        server = start_redis(tmp / "redis", cpu=0)
        try:
            tree = config_tree(
                server.url, base, symbols, args.interval, jitter_s=args.jitter,
                outcomes=not args.no_outcomes,
            )  # fmt: skip
            if args.cooldown is not None:  # more or fewer alerts from the same snapshots
                tree["rules"] = [{**rule, "cooldown": args.cooldown} for rule in tree["rules"]]
            daemon = DaemonProcess("daemon", tree, tmp, wrap=wrap(args))
            r = redis.Redis.from_url(server.url)
            try:
                if args.valgrind is not None:  # slow: warm up uninstrumented, then count
                    daemon.warm_up(1800.0, 0.0)
                    while min(daemon.lengths()) < args.warm_cycles:  # past a stream's first
                        daemon.check()
                        time.sleep(1.0)
                    callgrind(daemon.pid, "-i", "on")
                    time.sleep(args.settle)
                else:
                    daemon.warm_up(max(120.0, 4 * args.interval), args.settle)
                a0 = stored(r, symbols, keys.outbox)
                cpu0, n0, t0 = proc_cpu(daemon.pid), stored(r, symbols), time.monotonic()
                k0 = kernel_side(daemon.pid)
                window(args, daemon.pid)
                cpu1, n1, t1 = proc_cpu(daemon.pid), stored(r, symbols), time.monotonic()
                k1 = kernel_side(daemon.pid)
                a1 = stored(r, symbols, keys.outbox)
            finally:
                daemon.proc.terminate()
                daemon.proc.wait(30)
                r.close()
        finally:
            server.stop()
            stop(upstream)
    n, cpu, secs = n1 - n0, cpu1 - cpu0, t1 - t0
    print(
        f"{args.symbols} symbols at {args.interval:g} s: {n} snapshots stored in {secs:.1f} s "
        f"({n / secs:,.0f}/s), daemon {cpu / secs:.2f} cores, "
        f"{1000 * cpu / max(n, 1):.3f} ms of CPU per stored snapshot, "
        f"{1000 * (a1 - a0) / max(n, 1):.1f} alerts per 1,000 snapshots"
    )
    faults, sys_s = k1[0] - k0[0], k1[1] - k0[1]
    print(
        f"kernel side: {1000 * sys_s / max(n, 1):.3f} ms of system CPU and "
        f"{faults / max(n, 1):.2f} minor page faults per stored snapshot"
    )
    if args.py_spy is not None:
        summarize(args.py_spy, args.top)


if __name__ == "__main__":
    main()
