"""Email over SMTP (aiosmtplib): STARTTLS or implicit TLS, optional AUTH, multipart text + HTML
rendered from the same event. The Message-ID derives from the alert id, so a redelivered mail
is recognisable as the same message."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import html
import re
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib
import msgspec
import structlog

from gex_alertd import redaction
from gex_alertd.model import AlertEvent
from gex_alertd.notify.base import (
    ChannelType,
    DeliveryOutcome,
    Notifier,
    Ok,
    describe_exc,
    permanent,
    retry,
)
from gex_alertd.notify.channel import ChannelBase, Problem
from gex_alertd.notify.render import (
    color_of,
    context_line,
    group_id,
    group_title,
    headline,
    key_numbers,
    levels_line,
    subject,
    title,
)
from gex_alertd.quoted import quoted

log = structlog.get_logger(__name__)

QUIT_TIMEOUT_S = 5.0  # the QUIT after an accepted mail (see _quit)
_ADDRESS = re.compile(r"[^@\s<>,;]+@[^@\s<>,;.][^@\s<>,;]*")


def is_email_address(value: str) -> bool:
    """`a@example.com` or `Desk <a@example.com>`: one address with a local part and a domain."""
    _name, addr = email.utils.parseaddr(value)
    return bool(addr) and _ADDRESS.fullmatch(addr) is not None


class EmailChannel(ChannelBase, tag="email", kw_only=True):
    host: str
    port: int = 587
    starttls: bool = True
    ssl: bool = False  # implicit TLS (port 465)
    username: str | None = None
    password: str | None = None
    from_: str = msgspec.field(name="from")
    to: list[str]
    timeout_s: float = 20.0
    validate_certs: bool = True
    ca_file: str | None = None

    def problems(self) -> list[Problem]:
        out = super().problems()
        if self.ssl and self.starttls:
            out.append(("starttls", "choose one of starttls and ssl (implicit TLS)"))
        if not self.host.strip() or any(c.isspace() for c in self.host):
            out.append(("host", f"expected a host name or address, got {self.host!r}"))
        if not 1 <= self.port <= 65535:
            out.append(("port", f"expected 1-65535, got {self.port}"))
        if not self.to:
            out.append(("to", "at least one recipient"))
        for i, addr in enumerate([self.from_, *self.to]):
            if not is_email_address(addr):
                out.append(
                    ("from" if i == 0 else f"to[{i - 1}]", f"not an email address: {addr!r}")
                )
        return out


def text_body(alerts: Sequence[AlertEvent]) -> str:
    parts = []
    for a in alerts:
        lines = [f"{headline(a)}  {title(a)}", a.summary, ""]
        levels = levels_line(a)
        if levels:
            lines += [f"  levels: {levels}", ""]
        lines += [f"  {k:<18} {v}" for k, v in key_numbers(a)]
        lines += ["", context_line(a)]
        parts.append("\n".join(lines))
    head = f"{group_title(alerts)}\n\n" if len(alerts) > 1 else ""
    return head + ("\n\n" + "-" * 60 + "\n\n").join(parts) + "\n"


def html_body(alerts: Sequence[AlertEvent]) -> str:
    esc = html.escape
    blocks = []
    for a in alerts:
        color = color_of(a)
        rows = "".join(
            f"<tr><td style='color:#666;padding:2px 12px 2px 0'>{esc(k)}</td>"
            f"<td style='font-family:monospace'>{esc(v)}</td></tr>"
            for k, v in key_numbers(a)
        )
        levels = levels_line(a)
        lv = f"<p style='color:#444'><b>levels</b>: {esc(levels)}</p>" if levels else ""
        blocks.append(
            f"<div style='border-left:4px solid {color};padding:4px 12px;margin:12px 0'>"
            f"<div style='font-weight:bold'>{esc(headline(a))} · {esc(title(a))}</div>"
            f"<p>{esc(a.summary)}</p>{lv}<table>{rows}</table>"
            f"<p style='color:#888;font-size:small'>{esc(context_line(a))}</p></div>"
        )
    head = f"<h3>{esc(group_title(alerts))}</h3>" if len(alerts) > 1 else ""
    return f"<html><body>{head}{''.join(blocks)}</body></html>"


def build_message(cfg: EmailChannel, alerts: Sequence[AlertEvent]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject(alerts)
    msg["From"] = cfg.from_
    msg["To"] = ", ".join(cfg.to)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    ident = alerts[0].id if len(alerts) == 1 else group_id(alerts)
    digest = hashlib.sha256(ident.encode()).hexdigest()[:32]
    msg["Message-ID"] = f"<{digest}@gex-alertd>"
    msg["X-Gex-Alert-Id"] = ident
    msg.set_content(text_body(alerts))
    msg.add_alternative(html_body(alerts), subtype="html")
    return msg


class EmailNotifier(Notifier[EmailChannel]):
    def __init__(self, name: str, cfg: EmailChannel) -> None:
        super().__init__(name, cfg)
        redaction.register(cfg.password)
        self._tls: ssl.SSLContext | None = None
        if cfg.ca_file:
            self._tls = ssl.create_default_context(cafile=cfg.ca_file)

    def probe_target(self) -> tuple[str, int] | None:
        return (self.cfg.host, self.cfg.port) if self.cfg.host else None

    async def send(self, alerts: Sequence[AlertEvent]) -> DeliveryOutcome:
        # the whole send within timeout_s, as an HTTP channel's POST: aiosmtplib's own timeout
        # is per step (~8-12 of them), so a server answering each just in time held the
        # channel (and what it holds, past claim_idle) for many times timeout_s
        cfg = self.cfg
        client = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            username=cfg.username,
            password=cfg.password,
            use_tls=cfg.ssl,
            # True = STARTTLS required (never send credentials in clear); False = plain
            start_tls=cfg.starttls if not cfg.ssl else False,
            validate_certs=cfg.validate_certs,
            tls_context=self._tls,
            timeout=cfg.timeout_s,
        )
        try:
            async with asyncio.timeout(cfg.timeout_s):
                outcome = await self._send(client, build_message(cfg, alerts))
            if isinstance(outcome, Ok):
                await _quit(client)
            return outcome
        except TimeoutError:
            return retry(f"timeout after {cfg.timeout_s:g}s")
        finally:
            client.close()

    async def _send(self, client: aiosmtplib.SMTP, msg: EmailMessage) -> DeliveryOutcome:
        """Connect (STARTTLS, AUTH) and send, without the QUIT aiosmtplib.send() ends with:
        a server that took the mail and then stalled its QUIT answer turned a delivered mail
        into a timeout, and the mail was sent again at each retry."""
        try:
            await client.connect()
            refused, _ = await client.send_message(msg)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            reason = "all recipients refused: " + describe_exc(exc)
            return retry(reason) if all(400 <= c < 500 for c in codes) else permanent(reason)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code < 0:
                # aiosmtplib's code for an answer it could not parse (a garbage line, one too
                # long): it says nothing of whether the mail can go, so it is retried, as an
                # HTTP receiver's garbage is; permanent, one bad line dead-lettered the alert
                return retry(f"malformed SMTP answer: {quoted(exc.message)}")
            reason = f"SMTP {exc.code}: {redaction.redact(exc.message)}"
            return retry(reason) if 400 <= exc.code < 500 else permanent(reason)
        except ssl.SSLCertVerificationError as exc:
            return permanent(describe_exc(exc))
        except (
            aiosmtplib.SMTPTimeoutError,
            aiosmtplib.SMTPServerDisconnected,
            aiosmtplib.SMTPConnectError,
            OSError,
            TimeoutError,
        ) as exc:
            return retry(describe_exc(exc))
        except aiosmtplib.SMTPException as exc:
            # the rest says the server cannot do what the config asks (no STARTTLS, no AUTH):
            # retrying will not change that
            return permanent(describe_exc(exc))
        if refused:
            # aiosmtplib raises only when every recipient is refused: the others have the mail
            # (a retry would repeat it to them), but the refused ones must not go unsaid
            log.warning(
                "mail refused for some recipients",
                channel=self.name,
                refused={addr: f"{r.code} {quoted(r.message)}" for addr, r in refused.items()},
            )
        return Ok(f"accepted for {len(self.cfg.to) - len(refused)} recipient(s)")


async def _quit(client: aiosmtplib.SMTP) -> None:
    """QUIT, a courtesy once the mail is accepted: bounded, and whatever the server does with it
    (no answer, an error, a close) the mail stays delivered."""
    try:
        async with asyncio.timeout(QUIT_TIMEOUT_S):
            await client.quit()
    except (TimeoutError, aiosmtplib.SMTPException, OSError):
        pass


CHANNEL = ChannelType("email", EmailChannel, EmailNotifier)
