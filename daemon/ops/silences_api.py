"""`/api/silences` on the ops server: list, add and expire silences (notify/silences.py) over
HTTP, for dashboards and scripts that do not run the CLI on the host.

    GET    /api/silences[?all=1]   {"now": ..., "silences": [silence + "status", ...]}
    POST   /api/silences           {"matchers": {...}, "duration": "1h" | seconds
                                    | "ends_at": ISO, "starts_at"?: ISO, "comment"?,
                                    "created_by"?}  -> 201 the silence
    DELETE /api/silences/{id}      -> 200 the expired silence | 404

Bodies are JSON (`Content-Type: application/json`, so no cross-site form can post one),
bounded (16 KiB) and strict (unknown keys refused); errors are JSON
`{"error": "..."}` naming the cause. Behind the same rule as every ops route: a non-loopback
bind needs the ops token (see ops/http.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from gex_alertd.notify import silences as sil
from gex_alertd.redaction import redact
from gex_alertd.rules.duration import parse_duration

MAX_BODY = 16 * 1024


class SilenceRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    matchers: sil.Matchers
    duration: str | float | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    comment: str = ""
    created_by: str = ""

    def duration_s(self, now: datetime) -> float:
        if (self.duration is None) == (self.ends_at is None):
            raise sil.SilenceError("give exactly one of duration and ends_at")
        if self.starts_at is not None and self.starts_at.tzinfo is None:
            raise sil.SilenceError("starts_at: give a time zone (e.g. 2026-05-15T13:30:00Z)")
        if self.duration is not None:
            try:
                return float(parse_duration(self.duration))
            except ValueError as exc:
                raise sil.SilenceError(f"duration: {exc}") from None
        assert self.ends_at is not None
        if self.ends_at.tzinfo is None:
            raise sil.SilenceError("ends_at: give a time zone (e.g. 2026-05-15T16:00:00Z)")
        return (self.ends_at - (self.starts_at or now)).total_seconds()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": redact(message)}, status=status)


def _dumps(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()


async def _read_bounded(request: web.Request) -> bytes | None:
    """The body, or None when it is larger than MAX_BODY (read no further than that)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(MAX_BODY + 1 - size)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            return None


class SilencesApi:
    def __init__(self, store: sil.SilenceStore) -> None:
        self.store = store

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/silences", self.list)
        app.router.add_post("/api/silences", self.create)
        app.router.add_delete("/api/silences/{id}", self.expire)

    async def list(self, request: web.Request) -> web.Response:
        show_all = request.query.get("all", "") in ("1", "true", "yes")
        try:
            silences = await self.store.all()
        except (RedisError, OSError) as exc:
            return _error(503, f"redis unavailable: {exc}")
        now = self.store.now()
        shown = [s for s in silences if show_all or s.status(now) != "expired"]
        body = {"now": now, "silences": sil.to_json(shown, now)}
        return web.json_response(body, dumps=_dumps)

    async def create(self, request: web.Request) -> web.Response:
        # JSON only: a browser cannot send application/json across origins without a CORS
        # preflight (which this server never grants), so a web page the operator visits cannot
        # forge a silence on a loopback ops server that has no token
        if request.content_type != "application/json":
            return _error(415, "send the silence as Content-Type: application/json")
        raw = await _read_bounded(request)
        if raw is None:
            return _error(413, f"body larger than {MAX_BODY} bytes")
        try:
            req = msgspec.json.decode(raw, type=SilenceRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _error(400, f"invalid silence: {exc}")
        try:
            now = await self.store.server_now()
            silence = await self.store.add(
                req.matchers,
                req.duration_s(now),
                comment=req.comment,
                created_by=req.created_by,
                starts_at=req.starts_at,
            )
        except sil.SilenceError as exc:
            return _error(400, f"invalid silence: {exc}")
        except (RedisError, OSError) as exc:
            return _error(503, f"redis unavailable: {exc}")
        body = sil.to_json([silence], self.store.now())[0]
        return web.json_response(body, status=201, dumps=_dumps)

    async def expire(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        try:
            silence = await self.store.expire(sid)
        except sil.SilenceError as exc:
            return _error(404, str(exc))
        except (RedisError, OSError) as exc:
            return _error(503, f"redis unavailable: {exc}")
        return web.json_response(sil.to_json([silence], self.store.now())[0], dumps=_dumps)
