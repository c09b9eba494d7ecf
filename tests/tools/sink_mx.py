"""A recipient MX for tests: a real SMTP server (aiosmtpd) that stores what it accepts.

Every accepted message is written to <maildir>/<n>.eml with <n>.json holding
the envelope and session facts (EHLO name, TLS). Replies per recipient come
from an optional behaviour file re-read on every RCPT, so a test can make
the MX answer 451 or 550 and later recover:

    {"rcpt": {"bounce@": "550 5.1.1 No such user", "*": "250"}, "data": "250"}

PIPELINING (RFC 2920) is offered, as by every big MX, unless the behaviour
file says "pipelining": false; <n>.json says whether the client's RCPT had
already arrived with its MAIL ("pipelined").

Usage: sink_mx.py --port N --maildir DIR [--behaviour FILE] [--tls-cert C --tls-key K]
"""
from __future__ import annotations

import argparse
import asyncio
import fnmatch
import itertools
import json
import os
import ssl
from pathlib import Path

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, maildir: Path, behaviour: Path | None) -> None:
        self.maildir = maildir
        self.behaviour = behaviour
        self.counter = itertools.count(len(list(maildir.glob("*.eml"))) + 1)

    def _rules(self) -> dict:
        if self.behaviour and self.behaviour.exists():
            try:
                return json.loads(self.behaviour.read_text() or "{}")
            except ValueError:
                return {}
        return {}

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self._rules().get("pipelining", True):
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, options):
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.pipelined = bool(server._reader._buffer)  # the next commands came in the same write
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        for pattern, reply in self._rules().get("rcpt", {}).items():
            if pattern != "*" and (pattern in address or fnmatch.fnmatch(address, pattern)):
                if reply.startswith("250"):
                    break
                return reply
        else:
            default = self._rules().get("rcpt", {}).get("*", "250")
            if not default.startswith("250"):
                return default
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = self._rules().get("data", "250")
        if not reply.startswith("250"):
            return reply
        n = next(self.counter)
        path = self.maildir / f"{n:06d}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(envelope.original_content)
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos, "helo": session.host_name,
                "tls": session.ssl is not None, "peer": session.peer[0] if session.peer else None,
                "pipelined": getattr(envelope, "pipelined", False)}
        path.with_suffix(".json").write_text(json.dumps(meta))
        os.replace(tmp, path)
        return f"250 2.0.0 Ok: stored as {n}"


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--maildir", required=True)
    p.add_argument("--behaviour")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_args()
    maildir = Path(args.maildir)
    maildir.mkdir(parents=True, exist_ok=True)
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    handler = Sink(maildir, Path(args.behaviour) if args.behaviour else None)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="mx.recipient.test", tls_context=tls, data_size_limit=50 * 2**20,
                     enable_SMTPUTF8=True, auth_require_tls=False),
        args.host, args.port, reuse_address=True)
    print(f"sink_mx listening on {args.host}:{args.port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
