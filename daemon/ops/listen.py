"""The `host:port` an HTTP server of ours binds (`ops.listen`, `gex-alertd web --listen`),
whether that host is reachable only from this machine, and the rule that a bind beyond
loopback needs `ops.auth_token` (enforced by `ops.auth`). No I/O and no aiohttp, so the
config check uses it too."""

from __future__ import annotations

import ipaddress
import re

# cookie- and header-safe characters (hex, base64, base64url), long enough not to be guessed
TOKEN_RE = re.compile(r"[A-Za-z0-9._~+/=-]{16,256}")


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (loopback); a clear error naming the value otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError(f"ops.listen: expected host:port, got {listen!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`; any other name may resolve to anything, and
    0.0.0.0 / :: bind every interface."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_problem(token: str | None) -> str | None:
    """Why `token` cannot be used (None when it can); never quotes the token itself."""
    if token is None:
        return None
    if not TOKEN_RE.fullmatch(token):
        return (
            f"expected 16 to 256 characters of A-Z a-z 0-9 . _ ~ + / = -, got {len(token)} "
            "characters (e.g. `openssl rand -hex 24`)"
        )
    return None


def bind_problem(host: str, token: str | None) -> str | None:
    """Why this bind is refused (None when it is fine): a non-loopback host without a token."""
    if token or is_loopback(host):
        return None
    return f"required when listening on {host}, which is not a loopback address"
