from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from gex_alertd.notify import email as email_channel
from gex_alertd.notify.base import Ok, Permanent, Retry
from gex_alertd.notify.email import EmailChannel, EmailNotifier
from tests.notify.support import alert
from tests.support.redis_server import free_port
from tests.support.wait import WAIT_S

USER, PASSWORD = "alerts", "s3cret-pw"


@dataclass
class Inbox:
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    tls_seen: list[bool] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        implicit = server.transport.get_extra_info("ssl_object") is not None
        self.tls_seen.append(session.ssl is not None or implicit)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login.decode() == USER
    ok = ok and data.password.decode() == PASSWORD
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_ctx, str(ca_file)


def _controller(inbox: Inbox, server_ctx: ssl.SSLContext, *, implicit: bool) -> Controller:
    # aiosmtpd only counts STARTTLS as TLS for auth_require_tls; with implicit TLS the whole
    # session is encrypted anyway
    kw: dict[str, Any] = dict(
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticator,
        auth_require_tls=not implicit,
    )
    if implicit:
        kw["ssl_context"] = server_ctx
    else:
        kw.update(tls_context=server_ctx, require_starttls=True)
    return Controller(inbox, **kw)


@pytest.fixture
def starttls_server(tls: tuple[ssl.SSLContext, str]) -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    ctl = _controller(inbox, tls[0], implicit=False)
    ctl.start()
    yield ctl, inbox
    ctl.stop()


def _channel(port: int, ca_file: str, **kw: Any) -> EmailChannel:
    base: dict[str, Any] = dict(
        host="127.0.0.1",
        port=port,
        username=USER,
        password=PASSWORD,
        from_="gex-alertd@example.com",
        to=["desk@example.com", "risk@example.com"],
        ca_file=ca_file,
        # the SMTP server is a thread of this busy process; no test here expects a timeout
        timeout_s=WAIT_S,
    )
    base.update(kw)
    return EmailChannel(**base)


async def test_starttls_auth_multipart_mail(
    starttls_server: tuple[Controller, Inbox], tls: tuple[ssl.SSLContext, str]
) -> None:
    ctl, inbox = starttls_server
    n = EmailNotifier("mail", _channel(ctl.port, tls[1]))
    a = alert(1, severity="critical")
    out = await n.send([a])
    assert isinstance(out, Ok), out
    assert inbox.tls_seen == [True]
    sender, rcpts, raw = inbox.messages[0]
    assert sender == "gex-alertd@example.com"
    assert rcpts == ["desk@example.com", "risk@example.com"]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Subject"].startswith("[CRITICAL] SPY: ")
    assert msg["X-Gex-Alert-Id"] == a.id
    plain, rich = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and rich is not None
    text = plain.get_content()
    html = rich.get_content()
    for fact in (a.summary, "513.10", a.id):
        assert fact in text and fact in html
    assert html.lstrip().startswith("<html>")


async def test_bad_password_is_permanent_and_redacted(
    starttls_server: tuple[Controller, Inbox], tls: tuple[ssl.SSLContext, str]
) -> None:
    ctl, inbox = starttls_server
    n = EmailNotifier("mail", _channel(ctl.port, tls[1], password="wrong-password-123"))
    out = await n.send([alert(1)])
    assert isinstance(out, Permanent) and "535" in out.reason
    assert "wrong-password-123" not in out.reason
    assert inbox.messages == []


async def test_untrusted_certificate_is_refused(
    starttls_server: tuple[Controller, Inbox], tmp_path: Path
) -> None:
    ctl, inbox = starttls_server
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    n = EmailNotifier("mail", _channel(ctl.port, str(other)))
    out = await n.send([alert(1)])
    assert isinstance(out, Permanent | Retry) and not inbox.messages
    assert "certificate" in out.reason.lower() or "ssl" in out.reason.lower()


async def test_implicit_tls(tls: tuple[ssl.SSLContext, str]) -> None:
    inbox = Inbox()
    ctl = _controller(inbox, tls[0], implicit=True)
    ctl.start()
    try:
        n = EmailNotifier("mail", _channel(ctl.port, tls[1], ssl=True, starttls=False))
        out = await n.send([alert(1), alert(2, "QQQ")])
        assert isinstance(out, Ok), out
        msg = email.message_from_bytes(inbox.messages[0][2], policy=email.policy.default)
        assert msg["Subject"].startswith("[WARNING] 2 alerts: QQQ, SPY")
        assert inbox.tls_seen == [True]
    finally:
        ctl.stop()


async def test_server_without_starttls_is_permanent(tls: tuple[ssl.SSLContext, str]) -> None:
    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        out = await EmailNotifier("mail", _channel(ctl.port, tls[1])).send([alert(1)])
        assert isinstance(out, Permanent) and "STARTTLS" in out.reason
        assert inbox.messages == []
    finally:
        ctl.stop()


async def test_server_down_is_a_retry(tls: tuple[ssl.SSLContext, str]) -> None:
    n = EmailNotifier("mail", _channel(free_port(), tls[1]))
    assert isinstance(await n.send([alert(1)]), Retry)


@dataclass
class SlowInbox(Inbox):
    """Answers each step of a mail (EHLO, MAIL, each RCPT, DATA) `delay_s` late: within any
    one step's timeout, but not the whole send's."""

    delay_s: float = 0.5

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        await asyncio.sleep(self.delay_s)
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await asyncio.sleep(self.delay_s)
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await asyncio.sleep(self.delay_s)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay_s)
        return await super().handle_DATA(server, session, envelope)


async def test_timeout_s_bounds_the_whole_send_not_each_smtp_step(
    tls: tuple[ssl.SSLContext, str],
) -> None:
    # aiosmtplib's timeout is per step (~8-12 of them): a server that answers each one just in
    # time (a tarpit) held a send, and the channel with it, for many times timeout_s, past
    # claim_idle (another daemon then claims what the channel holds)
    inbox = SlowInbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        cfg = _channel(ctl.port, tls[1], starttls=False, username=None, password=None)
        cfg = msgspec.structs.replace(cfg, timeout_s=1.2)  # 5 steps of 0.5 s: 2.5 s in all
        out = await EmailNotifier("mail", cfg).send([alert(1)])
        assert isinstance(out, Retry) and "timeout after 1.2s" in out.reason, out
    finally:
        ctl.stop()


async def test_a_malformed_smtp_answer_is_retried_not_dead_lettered() -> None:
    # aiosmtplib reports an answer it cannot parse as code -1, which fell in "not 4xx:
    # permanent": one garbage line (a proxy's error page during a relay's restart) sent the
    # alert to the dead letters at its first try, while an HTTP receiver's garbage is retried
    answers = [b"HELLO garbage\r\n", b"250-ok\r\n250-\x1b[31mX\r\nzzz\r\n"]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 127.0.0.1 ESMTP\r\n")
        await reader.readline()  # EHLO
        writer.write(answers.pop(0))
        await writer.drain()
        await reader.read(1024)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = EmailChannel(
        host="127.0.0.1", port=port, starttls=False, from_="a@example.com",
        to=["b@example.com"], timeout_s=WAIT_S,
    )  # fmt: skip
    try:
        for _ in range(2):
            out = await EmailNotifier("mail", cfg).send([alert(1)])
            assert isinstance(out, Retry), out
            assert "malformed" in out.reason.lower() and "\x1b" not in out.reason, out
    finally:
        server.close()
        await server.wait_closed()


async def test_a_mail_the_server_accepted_is_delivered_even_if_it_then_stalls_on_quit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # aiosmtplib.send() QUITs inside the send: a server that answered 250 to the message and
    # then never answered QUIT ran the whole send into its timeout, a Retry: the mail it had
    # taken was sent again at every retry, and the alert dead-lettered as failed at the end
    monkeypatch.setattr(email_channel, "QUIT_TIMEOUT_S", 0.2)
    taken: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 127.0.0.1 ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                taken.append(await reader.readuntil(b"\r\n.\r\n"))
                writer.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                await reader.read()  # never answers: stalls until the client goes
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = EmailChannel(
        host="127.0.0.1", port=port, starttls=False, from_="a@example.com",
        to=["b@example.com"], timeout_s=WAIT_S,
    )  # fmt: skip
    try:
        out = await EmailNotifier("mail", cfg).send([alert(1)])
        assert isinstance(out, Ok), out
        assert len(taken) == 1
    finally:
        server.close()
        await server.wait_closed()


async def test_a_recipient_the_server_refuses_is_named_in_a_warning_not_dropped_silently() -> None:
    # aiosmtplib raises only when every recipient is refused; one refused of two came back as
    # a plain success, so that desk got no alert again and nothing said so
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 127.0.0.1 ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"RCPT" and b"gone@" in line:
                writer.write(b"550 5.1.1 no such user\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                await reader.readuntil(b"\r\n.\r\n")
                writer.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = EmailChannel(
        host="127.0.0.1", port=port, starttls=False, from_="a@example.com",
        to=["desk@example.com", "gone@example.com"], timeout_s=WAIT_S,
    )  # fmt: skip
    try:
        with structlog.testing.capture_logs() as logs:
            out = await EmailNotifier("mail", cfg).send([alert(1)])
        assert isinstance(out, Ok), out  # the other recipient has it: a retry would repeat it
        [line] = [e for e in logs if e["event"] == "mail refused for some recipients"]
        assert line["log_level"] == "warning" and line["channel"] == "mail"
        assert "gone@example.com" in str(line["refused"]) and "550" in str(line["refused"])
    finally:
        server.close()
        await server.wait_closed()
