"""Email over SMTP (aiosmtplib): STARTTLS or implicit TLS, optional AUTH, multipart text + HTML
rendered from the same event. The Message-ID derives from the alert id, so a redelivered mail
is recognisable as the same message."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from gex_alertd import redaction
from gex_alertd.config import EmailChannel
from gex_alertd.model import AlertEvent
from gex_alertd.notify.base import DeliveryOutcome, Notifier, Ok, describe_exc, permanent, retry
from gex_alertd.notify.render import group_id, html_body, subject, text_body


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


class EmailNotifier(Notifier):
    def __init__(self, name: str, cfg: EmailChannel) -> None:
        super().__init__(name)
        self.cfg = cfg
        redaction.register(cfg.password)
        self._tls: ssl.SSLContext | None = None
        if cfg.ca_file:
            self._tls = ssl.create_default_context(cafile=cfg.ca_file)

    async def send(self, alerts: Sequence[AlertEvent]) -> DeliveryOutcome:
        cfg = self.cfg
        msg = build_message(cfg, alerts)
        try:
            await aiosmtplib.send(
                msg,
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
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            reason = "all recipients refused: " + describe_exc(exc)
            return retry(reason) if all(400 <= c < 500 for c in codes) else permanent(reason)
        except aiosmtplib.SMTPResponseException as exc:
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
        return Ok(f"accepted for {len(cfg.to)} recipient(s)")
