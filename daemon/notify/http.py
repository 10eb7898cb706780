"""The HTTP POST shared by the webhook and Slack notifiers: one session per notifier,
timeouts and connection errors mapped to Retry, every error text redacted."""

from __future__ import annotations

import asyncio

import aiohttp

from gex_alertd.notify.base import (
    DeliveryOutcome,
    classify_http,
    describe_exc,
    permanent,
    retry,
)

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
    def __init__(self, timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # trust_env off: a proxy from the environment must not see our webhook URLs
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> DeliveryOutcome:
        try:
            async with self.session().post(url, data=body, headers=headers) as resp:
                text = await _read_head(resp)
                return classify_http(resp.status, text, resp.headers.get("Retry-After"))
        except aiohttp.InvalidURL as exc:  # the config is wrong; retrying cannot help
            return permanent(describe_exc(exc))
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
