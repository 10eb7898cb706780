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
                text = await resp.text(errors="replace")
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
