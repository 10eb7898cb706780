"""Who may talk to the ops server (`/healthz`, `/metrics`, the live page, `/api/...`).

On loopback only this machine can connect, so no token is needed. Anything else needs
`ops.auth_token`: a request carries it as `Authorization: Bearer <token>` (scripts,
Prometheus) or as the cookie that opening any page once with `?token=<token>` sets
(browsers: HttpOnly so page scripts cannot read it, SameSite=Strict so another site cannot
make the browser send it). A configured token is required on every request, loopback too:
an operator who set one expects it to be checked.

Comparison is constant-time over SHA-256 digests, so neither the token's bytes nor its
length leak through timing. The token never appears in a log line (it is registered with
`redaction` when the config is loaded) nor in a response.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gex_alertd.ops.listen import bind_problem, token_problem

COOKIE = "gex_alertd_token"
QUERY = "token"


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _offered(request: web.Request) -> tuple[str | None, bool]:
    """(the token the request offers, whether it came in the query string)."""
    if QUERY in request.query:
        return request.query[QUERY], True
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    return request.cookies.get(COOKIE), False


def require_token(token: str) -> Middleware:
    """An aiohttp middleware that answers 401 unless the request carries `token`."""
    expected = _digest(token)

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        offered, from_query = _offered(request)
        if offered is None or not hmac.compare_digest(_digest(offered), expected):
            raise web.HTTPUnauthorized(
                text="401: this endpoint needs the ops token: send `Authorization: Bearer "
                "<token>`, or open the page once with ?token=<token> to set a cookie\n",
                headers={"WWW-Authenticate": 'Bearer realm="gex-alertd"'},
            )
        response = await handler(request)
        if from_query and not response.prepared:
            # no redirect to strip the token from the URL: a SameSite=Strict cookie set on a
            # redirect that a link from another site started is not sent on the redirected
            # request. The page removes `?token=` from the address bar itself.
            response.set_cookie(COOKIE, offered, httponly=True, samesite="Strict", path="/")
        return response

    return check


def middlewares(host: str, token: str | None) -> list[Middleware]:
    """The middlewares for a server bound on `host`; ValueError when the bind is refused."""
    problem = bind_problem(host, token) or token_problem(token)
    if problem:
        raise ValueError(f"ops.auth_token: {problem}")
    return [require_token(token)] if token else []
