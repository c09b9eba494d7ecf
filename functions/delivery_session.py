"""One SMTP client connection to a destination, reused for every recipient of a batch.

Hosts are tried in MX order until one greets; STARTTLS is used whenever
offered (opportunistic, as RFC 3207 MTAs do; certificates are not checked
unless `delivery.requireTls`, which also refuses to send in clear). A
connection that breaks is reopened for the next recipient.
"""
from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass

from functions.mx_resolver import MxHost

_ENHANCED_PREFIX = ("2.", "4.", "5.")


@dataclass(frozen=True)
class Outcome:
    """What the destination said about one recipient."""

    code: int
    status: str
    text: str
    mx: str
    tls: bool

    @property
    def delivered(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return self.code >= 500


def split_reply(code: int, raw: bytes | str) -> tuple[str, str]:
    """(enhanced status, text) of a reply; the status is derived from the code when absent."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    text = " ".join(text.split())
    first = text.split(" ", 1)[0]
    if first[:2] in _ENHANCED_PREFIX and first.count(".") == 2 and first.replace(".", "").isdigit():
        return first, text[len(first):].strip()
    default = {2: "2.0.0", 4: "4.0.0", 5: "5.0.0"}.get(code // 100, "4.0.0")
    return default, text


class DeliverySession:
    def __init__(self, hosts: list[MxHost], port: int, helo: str, connect_timeout: float,
                 command_timeout: float, require_tls: bool) -> None:
        self.hosts = hosts
        self.port = port
        self.helo = helo
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.require_tls = require_tls
        self.smtp: smtplib.SMTP | None = None
        self.mx = ""
        self.tls = False
        self.failure: Outcome | None = None

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.require_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _open(self, host: MxHost, address: str, use_tls: bool) -> smtplib.SMTP:
        smtp = smtplib.SMTP(timeout=self.connect_timeout, local_hostname=self.helo)
        try:
            return self._handshake(smtp, host, address, use_tls)
        except BaseException:
            smtp.close()
            raise

    def _handshake(self, smtp: smtplib.SMTP, host: MxHost, address: str, use_tls: bool) -> smtplib.SMTP:
        code, msg = smtp.connect(address, self.port)
        if code != 220:
            smtp.close()
            raise smtplib.SMTPConnectError(code, msg)
        if smtp.sock is not None:
            smtp.sock.settimeout(self.command_timeout)
        smtp.ehlo_or_helo_if_needed()
        if use_tls and smtp.has_extn("starttls"):
            smtp._host = host.name  # SNI and certificate name: the MX name, not the address we dialled
            smtp.starttls(context=self._tls_context())
            smtp.ehlo()
            self.tls = True
        elif self.require_tls:
            smtp.quit()
            raise smtplib.SMTPNotSupportedError(f"{host.name} does not offer STARTTLS")
        else:
            self.tls = False
        return smtp

    def connect(self) -> bool:
        """Open a connection to the first host that answers; remember why if none did."""
        self.close()
        last = Outcome(451, "4.4.1", "No answer from any mail exchanger", "", False)
        for host in self.hosts:
            for address in host.addresses:
                for use_tls in (True, False):
                    try:
                        self.smtp = self._open(host, address, use_tls)
                        self.mx = host.name
                        self.failure = None
                        return True
                    except ssl.SSLError as exc:
                        last = Outcome(451, "4.7.5", f"TLS with {host.name} failed: {exc}", host.name, False)
                        if self.require_tls:
                            break
                        continue
                    except smtplib.SMTPNotSupportedError as exc:
                        last = Outcome(451, "4.7.5", str(exc), host.name, False)
                        break
                    except smtplib.SMTPConnectError as exc:
                        _, text = split_reply(exc.smtp_code, exc.smtp_error)
                        last = Outcome(451, "4.4.2", f"{host.name} greeted {exc.smtp_code} {text}", host.name, False)
                        break
                    except (OSError, smtplib.SMTPException) as exc:
                        last = Outcome(451, "4.4.1", f"{host.name} [{address}]: {exc}", host.name, False)
                        break
        self.failure = last
        return False

    def send(self, sender: str, recipient: str, message: bytes, eight_bit: bool) -> Outcome:
        """One transaction: MAIL, RCPT, DATA. Never raises for the destination's answers."""
        if self.smtp is None and not self.connect():
            assert self.failure is not None
            return self.failure
        smtp = self.smtp
        assert smtp is not None
        options = []
        if smtp.has_extn("size"):
            options.append(f"SIZE={len(message)}")
        if eight_bit and smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        try:
            code, raw = smtp.mail(sender, options)
            if code != 250:
                return self._refused(code, raw)
            code, raw = smtp.rcpt(recipient)
            if code not in (250, 251):
                return self._refused(code, raw)
            code, raw = smtp.data(message)
            if code != 250:
                return self._refused(code, raw)
            status, text = split_reply(code, raw)
            return Outcome(code, status, text, self.mx, self.tls)
        except smtplib.SMTPResponseException as exc:
            return self._refused(exc.smtp_code, exc.smtp_error)
        except (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPException) as exc:
            mx = self.mx
            self.close()
            return Outcome(451, "4.4.2", f"connection to {mx} lost: {exc}", mx, False)

    def _refused(self, code: int, raw: bytes) -> Outcome:
        status, text = split_reply(code, raw)
        outcome = Outcome(code, status, text, self.mx, self.tls)
        if code == 421:
            self.close()
        else:
            try:
                assert self.smtp is not None
                self.smtp.rset()
            except (OSError, smtplib.SMTPException):
                self.close()
        return outcome

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (OSError, smtplib.SMTPException):
                try:
                    self.smtp.close()
                except OSError:
                    pass
            self.smtp = None
