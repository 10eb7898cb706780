"""The daemon's poll path alone, for counting it: fetch -> decode -> rules -> commit batch.

    python -m bench.hot_path --config F.yaml

What `gex-alertd run` does per snapshot (the poll pool, `Poller.poll`, the flowgex client,
`Committer.commit` and its commit batches against the config's Redis), built from the same
config, and nothing else: no duties, no delivery, no ownership, no ops server. Under callgrind
(`bench.sample_daemon --valgrind OUT --hot-path`) the daemon runs 100-200x slower while its
periodic work (sweeps of every outbox, the backlog figures, the outcome duty) keeps its
wall-clock periods, so in the whole daemon that work weighs 100-200x more per snapshot than it
does at full speed; here the counts per stored snapshot are the poll path's alone. The alerts
are committed to the outboxes as usual and never read.

Not a `bench_*` module: a tool for `sample_daemon`, which starts it in place of the daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from gex_alertd import config as config_mod
from gex_alertd import connections, store
from gex_alertd.commit import Committer
from gex_alertd.ops.logging import configure
from gex_alertd.pipeline import Poller
from gex_alertd.pool import PollPool
from gex_alertd.redis_errors import RedisTrouble
from gex_alertd.sources.backoff import Backoff
from gex_alertd.sources.flowgex import FlowGexClient


async def run(path: str) -> None:
    cfg = config_mod.load(path)
    configure(cfg.ops.log_format, cfg.ops.log_level)
    redis = connections.connect_config(cfg.redis)
    client = FlowGexClient.from_config(cfg.source, max_age_s=store.max_age_s(cfg.redis))
    committer = Committer(redis, list(cfg.rules), cfg.redis)
    # as the daemon builds them (app._build_pollers): one bound commit and one RedisTrouble
    # shared by every poller, not one object each per target
    commit, trouble = committer.commit, RedisTrouble()
    pollers = [
        Poller(
            t,
            client,
            commit,
            backoff=Backoff(cfg.source.backoff_base_s, cfg.source.backoff_max_s),
            trouble=trouble,
        )
        for t in cfg.watch.entries()
    ]
    pool = PollPool(workers=2 * cfg.source.max_concurrency)
    pool.replace(pollers)
    pool.own(pool.pollers.keys())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    pool.start()
    await stop.wait()
    await pool.stop(2.0)
    await client.close()
    await redis.aclose()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    args, _ = ap.parse_known_args(argv)  # sample_daemon passes the daemon's own words too
    asyncio.run(run(args.config))


if __name__ == "__main__":
    main()
