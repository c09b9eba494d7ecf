"""The SMTP edge: aiosmtpd listeners that turn SMTP commands into function events.

The edge owns the protocol (TLS, AUTH PLAIN framing, size and recipient
limits, enhanced status codes on every reply, tarpitting of failed logins,
connection caps through runtime/smtp_accept.py) and nothing else: whether credentials are good, a recipient acceptable or a
message relayable is decided by the function serverless.yml binds to the
listener's hook, and the edge sends back the reply that function chose.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
import socket
import ssl
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from runtime import replies
from runtime.auth_throttle import AuthThrottle, address_key, username_key
from runtime.client_connection_table import ClientConnectionTable
from runtime.connection_limits import Admission, ConnectionLimits
from runtime.errors import FunctionTimeout, RelayError
from runtime.invoker import Deployment, FunctionRuntime
from runtime.jsonlog import JsonLog
from runtime.open_files import check_caps, current_limit
from runtime.repeated_events import RepeatedEvent
from runtime.replies import Reply
from runtime.settings import Settings
from runtime.smtp_accept import Acceptor, bind

# On the implicit-TLS listener AUTH is required and the session is always
# encrypted; aiosmtpd cannot tell and warns about auth_require_tls=False.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
_CODE = re.compile(rb"^(\d{3})([ -])(.*)$", re.S)
_HAS_ENHANCED = re.compile(rb"^[245]\.\d{1,3}\.\d{1,3}\b")
# Replies aiosmtpd writes itself, mapped to the enhanced status they stand for.
_ENHANCED_DEFAULT = {221: b"2.0.0", 250: b"2.0.0", 251: b"2.1.5", 252: b"2.5.0", 421: b"4.4.2", 450: b"4.2.0", 451: b"4.3.0",
                     452: b"4.3.1", 454: b"4.7.0", 500: b"5.5.2", 501: b"5.5.4", 502: b"5.5.1",
                     503: b"5.5.1", 504: b"5.5.4", 530: b"5.7.0", 550: b"5.0.0", 552: b"5.3.4",
                     553: b"5.1.3", 554: b"5.3.0", 555: b"5.5.4"}
_REWRITES = {
    b"552 Error: Too much mail data": str(replies.MESSAGE_TOO_BIG).encode(),
    b"552 Error: message size exceeds fixed maximum message size": str(replies.MESSAGE_TOO_BIG).encode(),
    b"500 Line too long (see RFC5321 4.5.3.1.6)": str(replies.LINE_TOO_LONG).encode(),
}


@dataclass(frozen=True)
class Listener:
    name: str
    host: str
    port: int
    implicit_tls: bool


class RelaySMTP(SMTP):
    """aiosmtpd's protocol with our AUTH, our replies and a pinned deployment."""

    def __init__(self, edge: "SmtpEdge", listener: Listener, deployment: Deployment, admission: Admission,
                 **kwargs: Any) -> None:
        self.edge = edge
        self.admission = admission
        self.listener = listener
        self.deployment = deployment
        self.session_id = uuid.uuid4().hex[:16]
        self._in_ehlo = False
        self._closed_logged = False
        self.offers_auth = deployment.manifest.smtp_binding(listener.name, "auth") is not None
        super().__init__(edge.handler, **kwargs)

    def _log_disconnected(self) -> None:
        """`smtp.disconnected` once per session; `open_transaction` says a MAIL was cut off before its 250."""
        if not self._closed_logged and self.session is not None:
            self._closed_logged = True
            self.edge.log.info("smtp.disconnected", listener=self.listener.name, session=self.session_id,
                               peer=self._peer_ip, peer_port=self._peer_port, open_transaction=self.envelope is not None
                               and self.envelope.mail_from is not None)

    def eof_received(self) -> bool | None:
        # aiosmtpd ends the session here (a TLS connection may only be torn down later).
        self._log_disconnected()
        return super().eof_received()

    def connection_lost(self, error: Exception | None) -> None:
        self._log_disconnected()
        self.admission.release()
        super().connection_lost(error)

    @property
    def encrypted(self) -> bool:
        # aiosmtpd fills session.ssl once STARTTLS has completed.
        return self.listener.implicit_tls or (self.session is not None and self.session.ssl is not None)

    async def push(self, status: Any) -> None:
        if isinstance(status, Reply):
            status = str(status)
        raw = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii", "replace") if isinstance(status, str) else status
        raw = _REWRITES.get(raw, raw)
        if not self._in_ehlo:
            match = _CODE.match(raw)
            if match and match.group(2) == b" ":
                code = int(match.group(1))
                text = match.group(3)
                if code in _ENHANCED_DEFAULT and not _HAS_ENHANCED.match(text):
                    raw = match.group(1) + b" " + _ENHANCED_DEFAULT[code] + b" " + text
        await super().push(raw)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    async def smtp_AUTH(self, arg: str) -> None:
        if await self.check_helo_needed("EHLO"):
            return
        assert self.session is not None
        if not self.offers_auth or not self.session.extended_smtp:
            await self._auth_refused("not_offered", replies.AUTH_NOT_OFFERED)
            return
        if not self.encrypted:
            await self._auth_refused("encryption_required", replies.AUTH_ENCRYPTION_REQUIRED)
            return
        if self.session.authenticated:
            await self._auth_refused("already_authenticated", replies.AUTH_ALREADY)
            return
        args = (arg or "").split()
        if not args or len(args) > 2:
            await self._auth_refused("syntax", replies.AUTH_USAGE)
            return
        mechanism = args[0].upper()
        if mechanism != "PLAIN":
            await self._auth_refused("unsupported_mechanism", replies.AUTH_MECHANISM.format(mechanism=mechanism),
                                     mechanism=mechanism)
            return
        if len(args) == 2:
            blob = args[1].encode()
        else:
            await self.push("334 ")
            line = await self._auth_line()
            if line is None:
                await self._auth_malformed("too_long", replies.AUTH_LINE_TOO_LONG)
                return
            blob = line.strip()
            if blob == b"*":
                await self._auth_refused("aborted", replies.AUTH_ABORTED)
                return
        try:
            _authz, login, password = base64.b64decode(blob, validate=True).split(b"\x00")
            username = login.decode("utf-8")
            secret = password.decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            await self._auth_malformed("malformed", replies.AUTH_SYNTAX)
            return
        await self._authenticate(username, secret)

    async def _auth_line(self) -> bytes | None:
        """The client's AUTH continuation line; None (the whole line read and dropped) when it is too long."""
        try:
            return await self._reader.readuntil()
        except asyncio.LimitOverrunError as exc:
            await self._reader.readexactly(exc.consumed)
            while True:
                try:
                    await self._reader.readuntil()
                    return None
                except asyncio.LimitOverrunError as more:
                    await self._reader.readexactly(more.consumed)

    async def _auth_malformed(self, result: str, reply: Reply) -> None:
        """Garbage where credentials belong counts against the address like a wrong key."""
        key = address_key(self._peer_ip)
        self.edge.throttle.record_failure(key)
        await self._auth_refused(result, reply, failures=self.edge.throttle.failures(key))

    async def _auth_refused(self, result: str, reply, mechanism: str = "PLAIN", **extra) -> None:
        """Every AUTH gets an smtp.auth line, including those refused before credentials are checked."""
        self.edge.log.info("smtp.auth", listener=self.listener.name, peer=self._peer_ip, mechanism=mechanism,
                           result=result, reply=str(reply), **extra)
        await self.push(reply)

    @property
    def _peer_ip(self) -> str:
        peer = self.session.peer if self.session else None
        return peer[0] if isinstance(peer, tuple) else str(peer)

    @property
    def _peer_port(self) -> int | None:
        peer = self.session.peer if self.session else None
        return peer[1] if isinstance(peer, tuple) else None

    async def _authenticate(self, username: str, password: str) -> None:
        peer = self._peer_ip
        throttle = self.edge.throttle
        attempt = throttle.begin(address_key(peer), username_key(username))
        if attempt.wait:
            self.edge.log.warning("smtp.auth_throttled", listener=self.listener.name, peer=peer, username=username,
                                  delay=round(attempt.wait, 3), refused=attempt.refused)
            if attempt.refused:
                await self._auth_refused("throttled", replies.AUTH_THROTTLED.format(peer=peer), username=username)
                return
            await asyncio.sleep(attempt.wait)
        fields = {"listener": self.listener.name, "peer": peer, "username": username, "mechanism": "PLAIN"}
        try:
            result = await self.call_hook("auth", {"mechanism": "PLAIN", "username": username, "password": password})
        except RelayError as exc:
            counted = exc.reply == replies.AUTH_INVALID
            reason = {replies.AUTH_PENDING: "pending", replies.AUTH_SUSPENDED: "suspended"}.get(exc.reply)
            failures = throttle.failed(attempt) if counted else None
            if reason:  # the right key, of a pending or suspended member
                throttle.succeeded(attempt, username_key(username))
            elif not counted:
                throttle.abandon(attempt)
            reason = reason or ("invalid" if counted else "error")
            self.edge.log.info("smtp.auth", **fields, result=reason, did=getattr(exc, "did", None),
                               failures=failures, reply=str(exc.reply))
            await self.push(exc.reply)
            return
        throttle.succeeded(attempt, username_key(username))
        principal = result.get("principal") or {}
        self.session.authenticated = True
        self.session.auth_data = principal
        self.edge.log.info("smtp.auth", **fields, result="ok", did=principal.get("did"))
        await self.push(replies.AUTH_OK)

    async def call_hook(self, hook: str, body: dict) -> dict:
        """The result of the function bound to `hook`; any failure is a RelayError carrying the reply to send."""
        spec = self.deployment.manifest.smtp_binding(self.listener.name, hook)
        if spec is None:
            raise RelayError(replies.TEMPORARY_FAILURE, detail=f"no function bound to {hook}")
        event = {"trigger": "smtp", "hook": hook, "session": self.session_event(), **body}
        try:
            result = await self.edge.runtime.invoke_async(spec.name, event, deployment=self.deployment)
        except FunctionTimeout:
            self.edge.log.error("smtp.function_timeout", function=spec.name, hook=hook, session=self.session_id)
            raise
        except RelayError:
            raise
        except Exception as exc:
            self.edge.log.error("function.error", function=spec.name, hook=hook, error=repr(exc),
                                session=self.session_id)
            raise RelayError(replies.TEMPORARY_FAILURE, detail=repr(exc)) from exc
        return result if isinstance(result, dict) else {}

    def session_event(self) -> dict:
        assert self.session is not None
        ssl_info = self.session.ssl or {}
        tls_version = None
        if self.listener.implicit_tls and self.transport is not None:
            sslobj = self.transport.get_extra_info("ssl_object")
            tls_version = sslobj.version() if sslobj else None
        elif ssl_info.get("ssl_object") is not None:
            tls_version = ssl_info["ssl_object"].version()
        peer = self.session.peer
        return {
            "id": self.session_id,
            "listener": self.listener.name,
            "peer": peer[0] if isinstance(peer, tuple) else peer,
            "helo": self.session.host_name,
            "tls": self.encrypted,
            "tls_version": tls_version,
            "principal": self.session.auth_data if self.session.authenticated else None,
        }


class EdgeHandler:
    """aiosmtpd hook object: each hook becomes an invocation of the bound function."""

    def __init__(self, edge: "SmtpEdge") -> None:
        self.edge = edge

    async def handle_EHLO(self, server: RelaySMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        out = [r for r in responses if not r.startswith("250-AUTH") and r != "250 HELP"]
        out += ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"]
        if server.offers_auth and server.encrypted:
            out.append("250-AUTH PLAIN")
        out.append("250 HELP")
        return out

    async def handle_MAIL(self, server: RelaySMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> Any:
        result = await self._call(server, "mail", {"mail_from": address, "mail_options": options}, replies.SENDER_OK)
        if result.code == 250:
            envelope.mail_from = address
            envelope.mail_options.extend(options)
        return str(result)

    async def handle_RCPT(self, server: RelaySMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> Any:
        if len(envelope.rcpt_tos) >= self.edge.settings.smtp.maxRecipients:
            return str(replies.TOO_MANY_RECIPIENTS)
        result = await self._call(server, "rcpt", {
            "mail_from": envelope.mail_from, "rcpt_to": address, "rcpt_options": options,
            "accepted": list(envelope.rcpt_tos)}, replies.RECIPIENT_OK)
        if result.code == 250:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return str(result)

    async def handle_DATA(self, server: RelaySMTP, session: Session, envelope: Envelope) -> Any:
        content = envelope.original_content or b""
        result = await self._call(server, "data", {
            "envelope": {"mail_from": envelope.mail_from, "mail_options": envelope.mail_options,
                         "rcpt_tos": list(envelope.rcpt_tos)},
            "content": content,
            "size": len(content),
        }, replies.ACCEPTED, unbound=replies.TEMPORARY_FAILURE)
        return str(result)

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd would send the exception's text to the client; it gets a deliberate reply, the log the rest."""
        self.edge.log.error("smtp.session_error", error=repr(error)[:500])
        return str(replies.TEMPORARY_FAILURE)

    @staticmethod
    async def _call(server: RelaySMTP, hook: str, body: dict, default: Reply,
                    unbound: Reply | None = None) -> Reply:
        """The reply the bound function chose (`default` when it names none), or the one its refusal carries."""
        if server.deployment.manifest.smtp_binding(server.listener.name, hook) is None:
            return unbound or default
        try:
            result = await server.call_hook(hook, body)
        except RelayError as exc:
            return exc.reply
        reply = result.get("reply")
        return Reply.from_dict(reply) if reply else default


class SmtpEdge:
    def __init__(self, settings: Settings, runtime: FunctionRuntime, log: JsonLog,
                 tls_context: ssl.SSLContext, client_table: ClientConnectionTable | None = None) -> None:
        self.settings = settings
        self.client_table = client_table  # an edge process's share of the per-client counts
        self.runtime = runtime
        self.log = log
        self.tls_context = tls_context
        self.handler = EdgeHandler(self)
        self.throttle = AuthThrottle.from_settings(settings)
        self.acceptors: list[Acceptor] = []
        self.exhausted = RepeatedEvent(log, "smtp.resource_exhausted", level="error")
        self.refused = RepeatedEvent(log, "smtp.connection_refused")
        self.listeners = [
            Listener("submission", *settings.listen.submission, implicit_tls=False),
            Listener("smtps", *settings.listen.smtps, implicit_tls=True),
            Listener("mx", *settings.listen.mx, implicit_tls=False),
        ]

    def _factory(self, listener: Listener):
        def make(admission: Admission) -> RelaySMTP:
            deployment = self.runtime.require()
            requires_auth = deployment.manifest.smtp_binding(listener.name, "auth") is not None
            return RelaySMTP(
                self, listener, deployment, admission,
                data_size_limit=self.settings.smtp.maxMessageSize,
                hostname=self.settings.hostname,
                ident="ESMTP Atmosphere Mail",
                tls_context=None if listener.implicit_tls else self.tls_context,
                require_starttls=False,
                timeout=self.settings.smtp.sessionTimeout,
                auth_required=requires_auth,
                auth_require_tls=not listener.implicit_tls,
                auth_exclude_mechanism=["LOGIN"],
                command_call_limit={"*": 1_000_000, "AUTH": 10, "EHLO": 50, "HELO": 50, "STARTTLS": 5},
                loop=asyncio.get_running_loop(),
            )
        return make

    async def start(self, sockets: dict[str, socket.socket] | None = None, skip: tuple[str, ...] = ()) -> None:
        """Listen on every listener but `skip`; with `sockets`, only on those already-bound sockets."""
        smtp = self.settings.smtp
        chosen = [listener for listener in self.listeners if listener.name not in skip
                  and (sockets is None or listener.name in sockets)]
        check_caps(self.log, current_limit(), len(chosen), smtp.maxConnections)
        for listener in chosen:
            sock = sockets[listener.name] if sockets is not None else bind(listener.host, listener.port)
            limits = ConnectionLimits(smtp.maxConnectionsPerClient, smtp.maxConnections, self.client_table,
                                      listener.name)
            acceptor = Acceptor(listener.name, sock, self._factory(listener), limits,
                                self.tls_context if listener.implicit_tls else None, self.log,
                                self.exhausted, self.refused)
            acceptor.start()
            self.acceptors.append(acceptor)
            self.log.info("smtp.listening", listener=listener.name, host=listener.host, port=listener.port,
                          tls="implicit" if listener.implicit_tls else "starttls", pid=os.getpid(),
                          max_connections=smtp.maxConnections, max_connections_per_client=smtp.maxConnectionsPerClient)

    async def stop(self) -> None:
        await asyncio.gather(*(acceptor.stop() for acceptor in self.acceptors))
        self.acceptors.clear()
