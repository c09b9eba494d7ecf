"""A real DNS server for the tests: BIND 9 on a loopback port, zones open to dynamic update.

Zones `test.` and `example.` are authoritative here, so any name a test
uses (member.example, recipient.test, atmos.test ...) can be given MX, A
and DKIM TXT records at run time with RFC 2136 updates, the way an operator
publishes records at their DNS provider.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.resolver
import dns.update

from harness.ports import free_port

ZONES = ("test", "example")


def txt_strings(value: str) -> str:
    """A TXT value as quoted strings of at most 255 octets (long DKIM keys need several)."""
    chunks = [value[i:i + 250] for i in range(0, len(value), 250)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


class Bind:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Bind":
        named = shutil.which("named") or "/usr/sbin/named"
        zones = "\n".join(
            f'zone "{z}" {{ type primary; file "{z}.zone"; allow-update {{ 127.0.0.1; }}; }};' for z in ZONES)
        (self.workdir / "named.conf").write_text(f"""
options {{
  directory "{self.workdir}";
  listen-on port {self.port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  notify no;
  pid-file "{self.workdir}/named.pid";
  session-keyfile "{self.workdir}/session.key";
  allow-transfer {{ none; }};
}};
controls {{ }};
{zones}
""")
        for zone in ZONES:
            (self.workdir / f"{zone}.zone").write_text(
                f"$TTL 30\n@ IN SOA ns.{zone}. hostmaster.{zone}. 1 60 60 3600 30\n"
                f"@ IN NS ns.{zone}.\nns IN A 127.0.0.1\n")
        self.proc = subprocess.Popen([named, "-g", "-c", str(self.workdir / "named.conf")],
                                     stdout=open(self.workdir / "named.log", "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if "running" in (self.workdir / "named.log").read_text() and self._serving():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("named did not start:\n" + (self.workdir / "named.log").read_text())

    def _serving(self) -> bool:
        """named logs "running" a moment before it answers on TCP; updates sent then are refused or SERVFAIL."""
        for zone in ZONES:
            try:
                answer = dns.query.tcp(dns.message.make_query(f"{zone}.", "SOA"), "127.0.0.1", port=self.port,
                                       timeout=2)
            except (OSError, dns.exception.DNSException):
                return False
            if answer.rcode() != dns.rcode.NOERROR or not answer.answer:
                return False
        return True

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def _zone_of(self, name: str) -> str:
        return next(z for z in ZONES if name.rstrip(".").endswith("." + z) or name.rstrip(".") == z)

    def _send(self, update: dns.update.Update) -> None:
        response = dns.query.tcp(update, "127.0.0.1", port=self.port, timeout=5)
        if response.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"DNS update refused: {dns.rcode.to_text(response.rcode())}")

    def add(self, name: str, rtype: str, value: str, ttl: int = 30) -> None:
        zone = self._zone_of(name)
        update = dns.update.Update(zone)
        if rtype.upper() == "TXT" and not value.startswith('"'):
            value = txt_strings(value)
        update.add(dns.name.from_text(name), ttl, rtype, value)
        self._send(update)

    def replace(self, name: str, rtype: str, value: str, ttl: int = 30) -> None:
        self.delete(name, rtype)
        self.add(name, rtype, value, ttl)

    def delete(self, name: str, rtype: str | None = None) -> None:
        update = dns.update.Update(self._zone_of(name))
        if rtype:
            update.delete(dns.name.from_text(name), rtype)
        else:
            update.delete(dns.name.from_text(name))
        self._send(update)

    def publish(self, records: list[dict]) -> None:
        """Records as the relay prints them ({name, type, value}), the way a member publishes them."""
        for record in records:
            self.replace(record["name"], record["type"], record["value"])

    def mail_domain(self, domain: str, mx_host: str | None = None, address: str = "127.0.0.1") -> None:
        """An MX for `domain` pointing at a host with an A record."""
        mx_host = mx_host or f"mx.{domain}"
        self.replace(mx_host, "A", address)
        self.replace(domain, "MX", f"10 {mx_host}.")

    def resolver(self) -> dns.resolver.Resolver:
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = ["127.0.0.1"]
        r.port = self.port
        return r

    @property
    def config(self) -> dict:
        """What a relay config needs to use this server."""
        return {"dns": {"nameservers": ["127.0.0.1"], "port": self.port, "timeout": 3}}
