"""A real Redis Cluster (3 primaries + 3 replicas) and a real Sentinel set on loopback ports.

Started from the same `redis-server` binary as the single-node fixture: cluster nodes with
`--cluster-enabled yes` joined by `redis-cli --cluster create ... --cluster-replicas 1`, and
sentinels with `redis-server <conf> --sentinel`. Every start is bounded in time; a missing
binary raises RuntimeError with the install hint (the fixtures turn it into a failure).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from tests.support import process
from tests.support.redis_server import INSTALL_HINT, RedisServer, free_ports

CLI_HINT = (
    "redis-cli not found on PATH: install it with `apt-get install -y redis-tools` "
    "(or run `make test`, which installs it)"
)
# a replica's first sync at once (the diskless default waits 5 s for more replicas to join)
FAST_SYNC = ("--repl-diskless-sync-delay", "0")
START_S = 60.0  # a bound a healthy start never gets near (a busy 2-core box: a few seconds)


def cluster_ports(n: int) -> list[int]:
    """n ports whose cluster-bus port (port + 10000) is free as well."""
    return free_ports(n, with_offset=10000)


def cli(*args: str, port: int | None = None, timeout: float = 20.0) -> str:
    """redis-cli against 127.0.0.1 (a port, or the args name the nodes), its stdout."""
    binary = shutil.which("redis-cli")
    if binary is None:
        raise RuntimeError(CLI_HINT)
    head = [binary, "-h", "127.0.0.1"] + (["-p", str(port)] if port else [])
    done = subprocess.run(
        [*head, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli {' '.join(args)}: {done.stderr.strip() or done.stdout}")
    return done.stdout


def info_field(text: str, name: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


def _until(check: Callable[..., object], what: str, timeout: float = START_S) -> None:
    """A redis-cli check, retried through the errors of a node not up yet."""
    process.until(
        check, what, timeout, errors=(RuntimeError, subprocess.TimeoutExpired, OSError), poll_s=0.1
    )


def _in_sync(node: RedisServer) -> bool:
    """A primary, or a replica whose link to its primary is up."""
    text = cli("info", "replication", port=node.port)
    return info_field(text, "role") == "master" or info_field(text, "master_link_status") == "up"


@contextmanager
def cut_off(replica: RedisServer, primary: RedisServer, hold_s: float = 0.0) -> Iterator[None]:
    """Inside, and for `hold_s` before it, `replica` misses what the primary takes, as in a
    network partition: frozen by SIGSTOP so it cannot reconnect, its link closed by the
    primary; thawed on the way out. Freezing alone would not do: the unread writes would wait
    in its socket buffer."""
    assert replica.proc is not None
    replica.proc.send_signal(signal.SIGSTOP)
    try:
        cli("client", "kill", "type", "replica", port=primary.port)
        time.sleep(hold_s)
        yield
    finally:
        replica.proc.send_signal(signal.SIGCONT)


class RedisCluster:
    """Six cluster nodes: `primaries` + one replica each, every node `cluster_state:ok`."""

    def __init__(self, workdir: Path, *, primaries: int = 3, aof: bool = False) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError(INSTALL_HINT)
        if shutil.which("redis-cli") is None:
            raise RuntimeError(CLI_HINT)
        self.dir = Path(workdir)
        self.nodes = [self._node(p, aof) for p in cluster_ports(primaries * 2)]

    def _node(self, port: int, aof: bool) -> RedisServer:
        home = self.dir / str(port)
        args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(home / "nodes.conf"),
            "--cluster-node-timeout", "2000",  # a dead primary is failed over within seconds
            *FAST_SYNC,
        ]  # fmt: skip
        return RedisServer(home, port, aof=aof, extra_args=tuple(args))

    @property
    def startup_nodes(self) -> list[str]:
        return [f"127.0.0.1:{n.port}" for n in self.nodes]

    def start(self) -> None:
        for n in self.nodes:
            n.start(timeout=START_S)
        cli("--cluster", "create", *self.startup_nodes, "--cluster-replicas", "1",
            "--cluster-yes", timeout=START_S)  # fmt: skip
        self.wait_ok()

    def wait_ok(self) -> None:
        """Every live node says cluster_state:ok, and every live replica is in sync."""
        for n in self.live():
            _until(
                lambda n=n: (
                    info_field(cli("cluster", "info", port=n.port), "cluster_state") == "ok"
                ),
                f"cluster_state:ok on node {n.port}",
            )
        for n in self.live():
            _until(lambda n=n: _in_sync(n), f"node {n.port} in sync with its primary")

    def live(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def role(self, node: RedisServer) -> str:
        return info_field(cli("info", "replication", port=node.port), "role") or "?"

    def primaries(self) -> list[RedisServer]:
        return [n for n in self.live() if self.role(n) == "master"]

    def replica_of(self, primary: RedisServer) -> RedisServer:
        for n in self.live():
            text = cli("info", "replication", port=n.port)
            if info_field(text, "role") == "slave" and info_field(text, "master_port") == str(
                primary.port
            ):
                return n
        raise RuntimeError(f"no live replica of {primary.port}")

    def primary_for(self, key: str) -> RedisServer:
        """The live primary serving `key`'s hash slot."""
        slot = int(cli("cluster", "keyslot", key, port=self.live()[0].port))
        for n in self.primaries():
            mine = next(
                ln for ln in cli("cluster", "nodes", port=n.port).splitlines() if "myself" in ln
            )
            for part in mine.split()[8:]:
                lo, _, hi = part.partition("-")
                if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                    return n
        raise RuntimeError(f"no live primary serves slot {slot} ({key})")

    def kill_primary(self, primary: RedisServer, lag_s: float = 0.0) -> RedisServer:
        """SIGKILL a primary and wait for its replica to be promoted and the cluster ok again;
        the promoted node. `lag_s`: the replica cut off that long before the kill
        (`cut_off`)."""
        replica = self.replica_of(primary)
        with cut_off(replica, primary, lag_s) if lag_s else nullcontext():
            primary.kill()
        self.wait_promoted(replica)
        return replica

    def wait_promoted(self, replica: RedisServer) -> None:
        _until(lambda: self.role(replica) == "master", f"replica {replica.port} promoted")
        self.wait_ok()

    def rejoin(self, node: RedisServer) -> None:
        """Restart a killed node (empty without AOF; its nodes.conf keeps its identity): the
        cluster makes it a replica of the node promoted in its place. Waits until it is in
        sync and the cluster ok."""
        node.start(timeout=START_S)
        _until(
            lambda: self.role(node) == "slave" and _in_sync(node),
            f"node {node.port} back as a replica in sync",
        )
        self.wait_ok()

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


class SentinelSet:
    """A primary, one replica and three sentinels watching them as `master_name`."""

    def __init__(self, workdir: Path, master_name: str = "gex", *, aof: bool = False) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError(INSTALL_HINT)
        self.dir = Path(workdir)
        self.master_name = master_name
        self.primary = RedisServer(self.dir / "primary", aof=aof, extra_args=FAST_SYNC)
        self.replica = RedisServer(self.dir / "replica", aof=aof, extra_args=FAST_SYNC)
        self.sentinel_ports = [0, 0, 0]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def sentinel_nodes(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.sentinel_ports]

    def start(self) -> None:
        self.primary.start(timeout=START_S)
        self.replica.extra_args = (*FAST_SYNC, "--replicaof", "127.0.0.1", str(self.primary.port))
        self.replica.start(timeout=START_S)
        _until(
            lambda: info_field(cli("info", "replication", port=self.replica.port),
                               "master_link_status") == "up",
            "the replica in sync",
        )  # fmt: skip
        self.sentinel_ports = cluster_ports(3)
        for i, port in enumerate(self.sentinel_ports):
            home = self.dir / f"sentinel{i}"
            home.mkdir(parents=True, exist_ok=True)
            conf = home / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {home}\nlogfile {home / 'sentinel.log'}\n"
                f"sentinel monitor {self.master_name} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {self.master_name} 1000\n"
                f"sentinel failover-timeout {self.master_name} 5000\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [self.primary.binary, str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.sentinel_ports:
            _until(
                lambda port=port: self._known(port),
                f"sentinel {port} knowing the primary, the replica and the other sentinels",
            )

    def _known(self, port: int) -> bool:
        text = cli("sentinel", "master", self.master_name, port=port)
        lines = text.splitlines()
        fields = dict(zip(lines[::2], lines[1::2], strict=False))
        return fields.get("num-slaves") == "1" and fields.get("num-other-sentinels") == "2"

    def primary_port_of(self, sentinel_port: int) -> int:
        out = cli("sentinel", "get-master-addr-by-name", self.master_name,
                  port=sentinel_port).split()  # fmt: skip
        return int(out[1])

    def _promoted(self, new: RedisServer) -> bool:
        """Every sentinel names `new` and sees it as a primary without a down flag, and it says
        it is one: what a client asking any sentinel needs."""
        if info_field(cli("info", "replication", port=new.port), "role") != "master":
            return False
        for port in self.sentinel_ports:
            if self.primary_port_of(port) != new.port:
                return False
            lines = cli("sentinel", "master", self.master_name, port=port).splitlines()
            if dict(zip(lines[::2], lines[1::2], strict=False)).get("flags") != "master":
                return False
        return True

    def kill_primary(self, lag_s: float = 0.0) -> RedisServer:
        """SIGKILL the primary and wait for the sentinels to promote the replica; the new
        primary. `lag_s`: for that long before the kill the replica is cut off (`cut_off`),
        so it misses what the primary took meanwhile, as in a network partition."""
        old, new = self.primary, self.replica
        with cut_off(new, old, lag_s) if lag_s else nullcontext():
            old.kill()
        _until(lambda: self._promoted(new), "every sentinel naming the promoted replica")
        self.primary, self.replica = new, old
        return new

    def rejoin(self) -> None:
        """Restart the node killed last (empty: no AOF) and wait for the sentinels to make it a
        replica of the current primary, in sync."""
        node = self.replica
        node.extra_args = (*FAST_SYNC, "--replicaof", "127.0.0.1", str(self.primary.port))
        node.start(timeout=START_S)
        _until(
            lambda: (
                info_field(cli("info", "replication", port=node.port), "master_link_status") == "up"
            ),
            f"node {node.port} back as a replica in sync",
        )

    def stop(self) -> None:
        for p in self.sentinels:
            process.stop(p)
        self.primary.stop()
        self.replica.stop()


def replicated(primary: RedisServer) -> bool:
    """Every replica of `primary` has acknowledged all it was sent (nothing only on the
    primary): what a test waits for before killing a primary it expects to lose nothing."""
    text = cli("info", "replication", port=primary.port)
    offset = info_field(text, "master_repl_offset")
    replicas = [line.split(":", 1)[1] for line in text.splitlines() if re.match(r"slave\d+:", line)]
    if not replicas or offset is None:
        return False
    acked = [dict(kv.split("=", 1) for kv in r.split(",")).get("offset") for r in replicas]
    return all(a == offset for a in acked)


def wait_replicated(primary: RedisServer) -> None:
    _until(lambda: replicated(primary), f"the replicas of {primary.port} caught up")
