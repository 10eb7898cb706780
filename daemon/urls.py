"""URL checks shared by the config sections (the source, every HTTP channel)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# an HTTP header name: visible ASCII but the separators (RFC 9110 tchar)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def header_name_ok(name: str) -> bool:
    """A valid HTTP header name (the upstream client's request, a channel's `headers`)."""
    return _HEADER_NAME.fullmatch(name) is not None


def is_http_url(value: str) -> bool:
    """An http(s) URL that parses and names a host (a broken one would only fail at send time)."""
    try:
        parts = urlsplit(value)
        _port = parts.port  # raises for a port out of range or not a number
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def host_encodable(host: str) -> bool:
    """Whether a host name survives the IDNA codec the resolver runs it through (a label over 63
    characters does not: a UnicodeError at every connect, not a config problem, otherwise)."""
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return True


def origin_refusal(url: str) -> str | None:
    """Why an http(s) URL cannot be the origin of the poll client (sources/http.py), None when
    it can: the client sends no credentials (the API key is the credential) and builds every
    request from the URL's path alone. The config check and the client share it."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials: the API key is the credential"
    if parts.query or parts.fragment:
        return "must not carry a query or fragment"
    return None


def host_port(url: str) -> tuple[str, int] | None:
    """(host, port) an http(s) URL connects to, for `check --probe`; None if it names none."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


def shown(url: str) -> str:
    """An URL as a log line may show it: scheme, host and path; user info and query dropped
    (they are where credentials travel), of a relative URL (a Location may be one) too.
    Callers still pass the result through redaction."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    query = "?…" if parts.query else ""
    if parts.scheme:
        return f"{parts.scheme}://{host}{port}{parts.path}{query}"
    # whole, not cut: a cut before the caller's redaction keeps a part of a secret in the path
    return f"{'//' + host + port if parts.netloc else ''}{parts.path}{query}"
