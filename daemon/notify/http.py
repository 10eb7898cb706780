"""The HTTP POST shared by the HTTP channels: one session per notifier, never a redirect
followed, timeouts and connection errors mapped to Retry, every error text redacted; and
`HttpNotifier`, what every channel that POSTs to one URL has (its poster, its probe target)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import aiohttp

from gex_alertd.notify.base import (
    SNIPPET_CHARS,
    DeliveryOutcome,
    Notifier,
    OnRedirect,
    Retry,
    classify_http,
    describe_exc,
    permanent,
    retry,
)
from gex_alertd.notify.channel import HttpChannel
from gex_alertd.urls import host_port

# only a snippet of a receiver's answer is ever used: read no more, counted after decompression
# (a receiver answering with a gzip bomb must not cost the daemon its memory)
RESPONSE_READ_MAX = 64 * 1024


async def _read_head(resp: aiohttp.ClientResponse) -> str:
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(1 << 14):
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_READ_MAX:
            break
    return b"".join(chunks)[:RESPONSE_READ_MAX].decode("utf-8", "replace")


class HttpPoster:
    def __init__(
        self,
        timeout_s: float,
        *,
        on_redirect: OnRedirect = "dead",
        wait_from_body: Callable[[str], float | None] | None = None,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._on_redirect: OnRedirect = on_redirect
        # receivers that say how long to wait in the JSON body of a 429 (Discord)
        self._wait_from_body = wait_from_body

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # trust_env off: a proxy from the environment must not see our webhook URLs
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> DeliveryOutcome:
        try:
            # never follow a redirect: it would turn the POST into a GET to another place
            # (with our headers) and report that GET's 200 as delivered
            async with self.session().post(
                url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                # a 2xx is delivered, whatever its body does next: only an error's body is read
                # (its snippet). Read for a 200 too, a body stalled after the status turned the
                # delivery into a timeout, and the alert was sent again until dead-lettered
                text = "" if 200 <= resp.status < 300 else await _read_head(resp)
                outcome = classify_http(
                    resp.status,
                    text,
                    resp.headers.get("Retry-After"),
                    location=resp.headers.get("Location"),
                    on_redirect=self._on_redirect,
                )
                if isinstance(outcome, Retry) and self._wait_from_body is not None:
                    wait = self._wait_from_body(text)
                    if wait is not None:
                        outcome = Retry(outcome.reason, wait, outcome.throttled)
                return outcome
        except aiohttp.InvalidURL as exc:  # the config is wrong; retrying cannot help
            return permanent(describe_exc(exc))
        except aiohttp.ClientResponseError as exc:  # a malformed answer, mostly
            # its text quotes the URL as yarl spells it (`%7e` as `~`, `:80` dropped), not as
            # the config does, so redaction missed it and a query token reached the dead letter
            why = " ".join(exc.message.split())[:SNIPPET_CHARS]
            return retry(f"{exc.__class__.__name__}: {exc.status}, {why}")
        except TimeoutError:
            return retry(f"timeout after {self._timeout.total:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            return retry(describe_exc(exc))
        except asyncio.CancelledError:
            raise

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


H = TypeVar("H", bound=HttpChannel)


class HttpNotifier(Notifier[H]):
    """A channel that POSTs to one URL, `target`: one HttpPoster (its session, the channel's
    timeout and redirect policy), `check --probe` connects to the URL's host, the session is
    closed with the notifier. Whether the URL is a secret is the channel's to say (register
    it for redaction before it can reach an error)."""

    def __init__(
        self,
        name: str,
        cfg: H,
        target: str,
        *,
        wait_from_body: Callable[[str], float | None] | None = None,
    ) -> None:
        super().__init__(name, cfg)
        self.target = target
        self._http = HttpPoster(
            cfg.timeout_s, on_redirect=cfg.on_redirect, wait_from_body=wait_from_body
        )

    def probe_target(self) -> tuple[str, int] | None:
        return host_port(self.target)

    async def post(self, body: bytes, headers: dict[str, str]) -> DeliveryOutcome:
        return await self._http.post(self.target, body, headers)

    async def aclose(self) -> None:
        await self._http.aclose()
