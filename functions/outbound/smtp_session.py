"""One SMTP client connection to a destination, reused for every recipient of a batch.

Hosts are tried in MX order until one greets; STARTTLS is used whenever
offered (opportunistic, as RFC 3207 MTAs do; certificates are not checked
unless `delivery.requireTls`, which also refuses to send in clear). A
connection that breaks is reopened for the next recipient.

Between batches an open connection waits in `ConnectionCache` for the next
batch to the same MX hosts, as Postfix's scache does: under load the spool
trigger hands over a batch every few milliseconds and a new connection
costs a TCP handshake, a TLS handshake and two EHLOs on both ends. A
reused connection is checked with NOOP first, so a server that went away
meanwhile gets a fresh connection and the same outcome as without the
cache.
"""
from __future__ import annotations

import re
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass

from functions.outbound.mx_resolver import MxHost

_ENHANCED_PREFIX = ("2.", "4.", "5.")
_LINE_START_PERIOD = re.compile(rb"(?m)^\.")


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


def dot_stuffed(message: bytes) -> bytes:
    """RFC 5321 4.5.2 transparency: a line that starts with a period gets one more."""
    return _LINE_START_PERIOD.sub(b"..", message)


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
        self.opened_at = 0.0
        self.reused = False

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
            # SNI and certificate name: the MX name, not the address we dialled. smtplib has no public way
            # to say so (pyproject pins the tested Pythons; test_delivery checks the name the MX sees).
            smtp._host = host.name
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
                        self.opened_at = time.monotonic()
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
        if self.reused:
            self.reused = False
            self._alive()
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
            if smtp.has_extn("pipelining"):
                code, raw = self._pipelined(smtp, sender, options, recipient, message)
            else:
                code, raw = self._lockstep(smtp, sender, options, recipient, message)
            if code != 250:
                return self._refused(code, raw)
            status, text = split_reply(code, raw)
            return Outcome(code, status, text, self.mx, self.tls)
        except smtplib.SMTPResponseException as exc:
            return self._refused(exc.smtp_code, exc.smtp_error)
        except (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPException) as exc:
            mx = self.mx
            self.abandon()
            return Outcome(451, "4.4.2", f"connection to {mx} lost: {exc}", mx, False)

    @staticmethod
    def _lockstep(smtp: smtplib.SMTP, sender: str, options: list[str], recipient: str,
                  message: bytes) -> tuple[int, bytes]:
        code, raw = smtp.mail(sender, options)
        if code != 250:
            return code, raw
        code, raw = smtp.rcpt(recipient)
        if code not in (250, 251):
            return code, raw
        return smtp.data(message)

    @staticmethod
    def _pipelined(smtp: smtplib.SMTP, sender: str, options: list[str], recipient: str,
                   message: bytes) -> tuple[int, bytes]:
        """RFC 2920: MAIL, RCPT and DATA in one write, their replies read in order; the first refusal counts.

        A server that answers DATA with 354 although it refused MAIL or RCPT gets an empty message
        ended at once (RFC 2920 section 3.1), and the earlier refusal is the outcome.
        """
        params = "".join(" " + o for o in options)
        smtp.send(f"MAIL FROM:{smtplib.quoteaddr(sender)}{params}\r\n"
                  f"RCPT TO:{smtplib.quoteaddr(recipient)}\r\nDATA\r\n")
        mail, rcpt, data = smtp.getreply(), smtp.getreply(), smtp.getreply()
        refused = mail if mail[0] != 250 else rcpt if rcpt[0] not in (250, 251) else None
        if data[0] != 354:
            return refused or data
        if refused is not None:
            smtp.send(b".\r\n")
            smtp.getreply()
            return refused
        body = dot_stuffed(message)
        if body[-2:] != b"\r\n":
            body += b"\r\n"
        smtp.send(body + b".\r\n")
        return smtp.getreply()

    def _alive(self) -> bool:
        """Whether a connection taken from the cache still answers; one that does not is closed."""
        if self.smtp is None:
            return False
        try:
            if self.smtp.noop()[0] == 250:
                return True
        except (OSError, smtplib.SMTPException):
            self.abandon()  # broken: a QUIT would only wait for the timeout
            return False
        self.close()
        return False

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
        """QUIT, as a client that is done says so; the socket is closed whatever the answer."""
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self.abandon()

    def abandon(self) -> None:
        """Close the socket without a word (the connection is already broken)."""
        if self.smtp is not None:
            try:
                self.smtp.close()
            except OSError:
                pass
            self.smtp = None


class ConnectionCache:
    """Idle connections by destination; one idle longer than `idle` or older than `lifetime` s is closed.

    The limits are Postfix's (smtp_connection_cache_time_limit 2 s,
    smtp_connection_reuse_time_limit 300 s); a timer closes what nobody
    took in time, so an MX does not keep our idle connections open.
    """

    def __init__(self, idle: float = 2.0, lifetime: float = 300.0, per_destination: int = 16) -> None:
        self.idle, self.lifetime, self.per_destination = idle, lifetime, per_destination
        self._parked: dict[tuple, list[tuple[float, DeliverySession]]] = {}
        self._lock = threading.Lock()
        self._reaper: threading.Timer | None = None

    @staticmethod
    def key(hosts: list[MxHost], port: int, helo: str, require_tls: bool) -> tuple:
        return (port, helo, require_tls, tuple(sorted((h.name, h.addresses) for h in hosts)))

    def take(self, key: tuple, hosts: list[MxHost]) -> DeliverySession | None:
        now = time.monotonic()
        found = None
        with self._lock:
            parked = self._parked.get(key, [])
            stale = []
            while parked and found is None:
                since, session = parked.pop()
                if self._fresh(since, session, now):
                    found = session
                else:
                    stale.append(session)
            stale += self._prune(now)
        for session in stale:
            session.close()
        if found is not None:
            found.hosts = hosts
            found.reused = True
        return found

    def give(self, key: tuple, session: DeliverySession) -> None:
        now = time.monotonic()
        if session.smtp is None:
            return
        with self._lock:
            parked = self._parked.setdefault(key, [])
            if len(parked) < self.per_destination and now - session.opened_at < self.lifetime:
                parked.append((now, session))
                session = None
                if self._reaper is None:
                    self._reaper = threading.Timer(self.idle, self._reap)
                    self._reaper.daemon = True
                    self._reaper.start()
        if session is not None:
            session.close()

    def _fresh(self, since: float, session: DeliverySession, now: float) -> bool:
        return now - since <= self.idle and now - session.opened_at < self.lifetime

    def _prune(self, now: float) -> list[DeliverySession]:
        stale = []
        for key in list(self._parked):
            keep = [(since, s) for since, s in self._parked[key] if self._fresh(since, s, now)]
            stale += [s for since, s in self._parked[key] if not self._fresh(since, s, now)]
            if keep:
                self._parked[key] = keep
            else:
                del self._parked[key]
        return stale

    def _reap(self) -> None:
        with self._lock:
            self._reaper = None
            stale = self._prune(time.monotonic() + 0.01)
            if self._parked:
                self._reaper = threading.Timer(self.idle, self._reap)
                self._reaper.daemon = True
                self._reaper.start()
        for session in stale:
            session.close()


# Held by the process like the parsed DKIM keys; `atmos-relay deploy` reloads the module and starts it empty.
connections = ConnectionCache()
