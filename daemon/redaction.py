"""One registry of secret values, so logs and error messages can scrub them wherever they occur.

Config loading registers every value that is a secret (API key, signing secrets, webhook URLs,
passwords, credentials inside URLs); the logging processor and error formatting call `redact`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MASK = "***"
# config keys whose values (every scalar beneath them) are secrets; a plain `url` is one only
# when it carries credentials, a hook path, a token or a query (see config._register_secrets)
SECRET_KEYS = frozenset(
    {"api_key", "secret", "secrets", "webhook_url", "password", "url", "token", "auth_token",
     "headers", "sentinel_password", "bearer_token"}
)  # fmt: skip
_PATH_PARTS = re.compile(r"[.\[\]]")
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
# credentials embedded in any URL, whether or not they were registered. The scheme is at most
# 32 characters: unbounded, a long run of letters without "://" was scanned to its end from
# every one of its positions (quadratic: 100 KB of upstream text held the loop ~5 s)
_URL_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]{0,31}://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@"
)


def register(value: str | None) -> None:
    global _pattern
    if not value or len(value) < 4:
        return
    new = {value}
    if "://" in value:
        try:
            parts = urlsplit(value)
            password = parts.password
        except ValueError:  # malformed (e.g. a broken IPv6 host): the whole value is registered
            parts, password = None, None
        if password:
            new.add(password)
        # a Slack/webhook URL's secret is its path; scrub the path on its own too
        if parts is not None and len(parts.path) > 8:
            new.add(parts.path.lstrip("/"))
    if new <= _secrets:
        return
    _secrets.update(new)
    ordered = sorted(_secrets, key=len, reverse=True)
    _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def is_secret_path(path: str) -> bool:
    """A config path (`channels.ops.headers.Authorization`) at or under a secret-bearing key."""
    return any(part in SECRET_KEYS for part in _PATH_PARTS.split(path))


def redact(text: str) -> str:
    if _pattern is not None:
        text = _pattern.sub(MASK, text)
    return _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


def registered() -> frozenset[str]:
    return frozenset(_secrets)
