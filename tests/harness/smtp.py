"""smtplib sessions against the relay's listeners, certificate checks off (self-signed)."""
from __future__ import annotations

import smtplib
import ssl


def insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def submission(relay, starttls: bool = True) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", relay.ports["submission"], local_hostname="client.test", timeout=30)
    s.ehlo()
    if starttls:
        s.starttls(context=insecure())
        s.ehlo()
    return s


def smtps(relay) -> smtplib.SMTP_SSL:
    s = smtplib.SMTP_SSL("127.0.0.1", relay.ports["smtps"], local_hostname="client.test", timeout=30,
                         context=insecure())
    s.ehlo()
    return s


def session(relay, listener: str) -> smtplib.SMTP:
    return submission(relay) if listener == "submission" else smtps(relay)


def reply_text(reply: tuple[int, bytes]) -> str:
    code, text = reply
    return f"{code} {text.decode()}"


def message(frm: str, to: str, subject: str = "hello", body: str = "Hi there.\r\n", extra: str = "") -> bytes:
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}\r\n{body}").encode()
