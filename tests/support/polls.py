"""Polls counted at the upstream: a recording `Upstream` in front of `gex-alertd simulate`.

Each daemon is given its own API key; the recording upstream (tests/support/upstream.py, every
request logged with its headers and arrival time) forwards each request to the simulator with
the simulator's key and hands back its reply as is. So the request log says which daemon polled
which symbol when, whatever the daemons themselves believe or log.

    async with Upstream() as up, forwarding(up, sim_url, API_KEY):
        ...  # daemons use up.url, each with its own key
        assert too_close(up.requests, 0.5 * interval) == []
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from tests.support.upstream import FLOW_GEX_PATH, Recorded, Reply, Upstream

# what a reply may carry that the client reads (the rest, e.g. Date and Server, is the proxy's)
_PASSED_HEADERS = ("Retry-After",)


@asynccontextmanager
async def forwarding(up: Upstream, base_url: str, api_key: str) -> AsyncIterator[None]:
    """While inside: `up` answers every request with the reply of the server at `base_url`
    (the request's path and query, `api_key` in X-Api-Key)."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def forward(request: web.Request) -> Reply:
            async with session.get(
                base_url + request.path_qs, headers={"X-Api-Key": api_key}
            ) as resp:
                body = await resp.read()
                headers = {h: resp.headers[h] for h in _PASSED_HEADERS if h in resp.headers}
                return Reply(resp.status, body, headers=headers, content_type=resp.content_type)

        up.set_default(forward)
        try:
            yield
        finally:
            # never the recording upstream's own made-up bodies to a daemon still polling
            up.set_default(Reply.json({"message": "upstream gone"}, status=503))


@dataclass(frozen=True)
class Poll:
    symbol: str
    key: str  # the X-Api-Key: which daemon
    at: float  # time.monotonic() at arrival


def polls(requests: Sequence[Recorded]) -> dict[str, list[Poll]]:
    """Flow GEX requests per symbol, in arrival order."""
    out: dict[str, list[Poll]] = defaultdict(list)
    for r in requests:
        if r.path.startswith(FLOW_GEX_PATH):
            sym = r.path[len(FLOW_GEX_PATH) :]
            out[sym].append(Poll(sym, r.headers.get("X-Api-Key", ""), r.arrived_at))
    return out


def too_close(requests: Sequence[Recorded], min_gap_s: float) -> list[tuple[Poll, Poll]]:
    """Consecutive polls of one symbol by two different daemons less than `min_gap_s` apart:
    a target polled twice in one interval (two owners at once)."""
    out = []
    for seq in polls(requests).values():
        for a, b in itertools.pairwise(seq):
            if a.key != b.key and b.at - a.at < min_gap_s:
                out.append((a, b))
    return out


def counts(requests: Sequence[Recorded], since: float, until: float) -> dict[str, int]:
    """Polls per symbol that arrived in [since, until)."""
    return {
        sym: sum(1 for p in seq if since <= p.at < until) for sym, seq in polls(requests).items()
    }
