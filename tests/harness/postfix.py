"""Postfix (and OpenDKIM) as private instances: the benchmark's baseline and a real bouncing MTA.

The benchmark compares the relay with what an operator would otherwise run
(Postfix to a smarthost, OpenDKIM as a milter), and the inbound MX test needs
bounces written by real software: a hand-made RFC 3464 report only proves we
parse what we wrote ourselves.

An instance is a work directory (`postfix -c DIR`: config, queue, log, keys)
plus loopback ports. /etc/postfix/main.cf is never touched: as root,
`postfix -c` and `postqueue -c` take any directory without an
alternate_config_directories entry, so instances run side by side. Not obvious:

* data_directory is the *relative* path `data`, and the milter socket sits in
  the queue directory: daemons become `postfix` after chdir() into the queue
  directory, and work directories (tmp_path, tempfile) sit under 0700 parents
  that user cannot traverse. Cert, key and maps are read as root beforehand.
* master.cf is written from scratch with chroot off (nothing to copy into a jail).
* maillog_file through postlogd: tests read a file; there is no syslog here.
* Config files get an mtime in the past: Postfix re-reads a file changed in the
  last ~2 s every 300 ms until it "settles", up to 2 s for every command.
* OpenDKIM runs as root (UserID is optional) with RequireSafeKeys off, else it
  refuses any key below the world-writable /tmp.
* stop() SIGTERMs the master and waits for its process group (~10 ms);
  `postfix stop` sleeps in one-second steps.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from harness.certs import self_signed
from harness.ports import free_port

MASTER = "/usr/lib/postfix/sbin/master"
# name type private unpriv chroot wakeup maxproc command
SERVICES = """\
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""
BASE_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = data
maillog_file = {log}
maillog_file_prefixes = {workdir}
myhostname = {hostname}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
alias_maps =
notify_classes =
smtpd_relay_restrictions = permit_mynetworks, permit_auth_destination, reject
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtpd_tls_cert_file = {tls}/cert.pem
smtpd_tls_key_file = {tls}/key.pem
smtpd_tls_security_level = may
smtpd_tls_session_cache_database = btree:data/smtpd_scache
smtp_tls_security_level = may
smtp_tls_session_cache_database = btree:data/smtp_scache"""
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    os.utime(path, (time.time() - 60,) * 2)  # see the module docstring


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process in process group `pgid`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


class OpenDKIM:
    """opendkim -f signing for one domain, on a unix socket or a loopback TCP port."""

    def __init__(self, workdir: Path, domain: str, selector: str, key_pem: str | bytes,
                 unix_socket: Path | None = None, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.domain, self.selector = domain, selector
        self.key_pem = key_pem.encode() if isinstance(key_pem, str) else key_pem
        self.unix_socket = unix_socket
        self.port = None if unix_socket else port or free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "OpenDKIM":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._kill_stale()
        key, conf, log = (self.workdir / name for name in ("dkim.key", "opendkim.conf", "opendkim.log"))
        key.unlink(missing_ok=True)
        with os.fdopen(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(self.key_pem)
        if self.unix_socket:
            self.unix_socket.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            self.unix_socket.unlink(missing_ok=True)
        listen = f"local:{self.unix_socket}" if self.unix_socket else f"inet:{self.port}@127.0.0.1"
        conf.write_text(f"Mode s\nDomain {self.domain}\nSelector {self.selector}\nKeyFile {key}\n"
                        f"Canonicalization relaxed/relaxed\nInternalHosts 127.0.0.1\nSocket {listen}\n"
                        f"UMask 000\nPidFile {self.workdir}/opendkim.pid\nRequireSafeKeys false\n"
                        "Syslog no\nSoftwareHeader no\n")
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(["opendkim", "-f", "-x", str(conf)], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not (self.unix_socket.exists() if self.unix_socket else _listening(self.port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("opendkim did not start:\n" + log.read_text())
            time.sleep(0.02)
        return self

    def _kill_stale(self) -> None:
        """An opendkim left running by an interrupted run in this work directory."""
        try:
            pid = int((self.workdir / "opendkim.pid").read_text())
            if str(self.workdir / "opendkim.conf") in Path(f"/proc/{pid}/cmdline").read_text():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        # SIGKILL: after SIGTERM libmilter waits for its 5 s poll timeout, and there is nothing to save.
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait(10)


class Postfix:
    """One private instance; `settings` override main.cf, `transports` is the transport map."""

    def __init__(self, workdir: Path, listen_port: int | None = None, hostname: str = "postfix.test",
                 settings: dict[str, str] | None = None, transports: dict[str, str] | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.listen_port = listen_port or free_port()
        self.hostname = hostname
        self.settings = dict(settings or {})
        self.transports = dict(transports or {})
        self.config_dir = self.workdir / "etc"
        self.queue_dir = self.workdir / "queue"
        self.log_file = self.workdir / "maillog"

    def main_cf(self) -> dict[str, str]:
        text = BASE_MAIN_CF.format(queue=self.queue_dir, workdir=self.workdir, log=self.log_file,
                                   hostname=self.hostname, tls=self.workdir / "tls")
        base = {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in text.splitlines())}
        if self.transports:
            base["transport_maps"] = f"texthash:{self.config_dir}/transport"
        return {**base, **self.settings}

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.queue_dir.mkdir(mode=0o755, exist_ok=True)
        if not (self.workdir / "tls" / "cert.pem").exists():
            self_signed(self.workdir / "tls", self.hostname)
        _write(self.config_dir / "main.cf", "".join(f"{k} = {v}\n" for k, v in self.main_cf().items()))
        _write(self.config_dir / "master.cf", f"127.0.0.1:{self.listen_port} inet n - n - - smtpd\n" + SERVICES)
        _write(self.config_dir / "transport", "".join(f"{k} {v}\n" for k, v in self.transports.items()))

    def _master_pid(self) -> int | None:
        """The running master's pid, or None (`master -t` tests the lock on the pid file)."""
        pid_file = self.queue_dir / "pid" / "master.pid"
        if not pid_file.exists() or subprocess.run([MASTER, "-c", str(self.config_dir), "-t"],
                                                   capture_output=True).returncode == 0:
            return None
        try:
            return int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self) -> "Postfix":
        self.write_config()
        if self._master_pid():  # left running by an interrupted run in this work directory
            Postfix.stop(self)
        proc = subprocess.run(["postfix", "-c", str(self.config_dir), "start"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"postfix did not start:\n{proc.stdout}{proc.stderr}\n{self.log()}")
        return self  # `postfix start` runs master -w, which returns once the listeners are bound

    def stop(self) -> None:
        pid = self._master_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)  # the master passes it on to its process group, then exits
        deadline = time.monotonic() + 10
        while (self._master_pid() or _group_alive(pid)) and time.monotonic() < deadline:
            time.sleep(0.01)
        if _group_alive(pid):
            os.killpg(pid, signal.SIGKILL)

    def postqueue(self, *args: str) -> str:
        """postqueue on this instance: "-f" retries deferred mail now, "-j" lists the queue as JSON lines."""
        return subprocess.run(["postqueue", "-c", str(self.config_dir), *args],
                              capture_output=True, text=True, check=True).stdout

    def queue_count(self) -> int:
        """Messages in maildrop, incoming, active, deferred and hold, counted on disk."""
        return sum(len(files) for q in QUEUES for _, _, files in os.walk(self.queue_dir / q))

    def wait_queue_empty(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.queue_count():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.queue_count()} messages still queued after {timeout}s")
            time.sleep(0.02)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def wait_log(self, pattern: str, timeout: float = 30.0) -> re.Match:
        """The first match of regex `pattern` in the maillog, once it appears."""
        deadline = time.monotonic() + timeout
        while not (match := re.search(pattern, self.log(), re.M)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not in the Postfix log after {timeout}s:\n{self.log()[-3000:]}")
            time.sleep(0.05)
        return match


class PostfixSigningRelay(Postfix):
    """The benchmark's baseline: smtpd (STARTTLS, no AUTH from 127.0.0.0/8) -> OpenDKIM -> relayhost.

    Tuned as an operator chasing throughput would: no DNS (bracketed
    relayhost, no client name lookups), no local delivery, no in_flow_delay
    throttle, a high process limit, connection caching to the smarthost.
    Only mail From `dkim_domain` is signed (OpenDKIM's Domain).

    The milter is on a unix socket. `milter_inet=True` puts it on a loopback
    TCP port instead, at ~90 ms per message: Postfix sends milter packets
    that get no reply back to back, and Nagle's algorithm holds the next one
    until the peer's delayed ACK (40 ms).
    """

    def __init__(self, workdir: Path, listen_port: int | None = None, *, sink_port: int, dkim_domain: str,
                 dkim_selector: str, dkim_key_pem: str | bytes, hostname: str = "postfix-relay.test",
                 process_limit: int = 200, delivery_concurrency: int = 20, milter_inet: bool = False) -> None:
        workdir = Path(workdir).resolve()
        self.sink_port = sink_port
        sock = None if milter_inet else workdir / "queue" / "milter" / "opendkim.sock"
        self.dkim = OpenDKIM(workdir / "opendkim", dkim_domain, dkim_selector, dkim_key_pem, unix_socket=sock)
        # smtpd resolves a relative unix: path from its working directory, the queue directory
        milter = f"inet:127.0.0.1:{self.dkim.port}" if milter_inet else "unix:milter/opendkim.sock"
        super().__init__(workdir, listen_port, hostname, settings={
            "relayhost": f"[127.0.0.1]:{sink_port}",
            "smtpd_milters": milter,
            "milter_default_action": "tempfail",
            "in_flow_delay": "0",
            "default_process_limit": str(process_limit),
            "smtpd_client_connection_count_limit": "0",
            "smtp_destination_concurrency_limit": str(delivery_concurrency),
            "smtp_connection_cache_destinations": f"[127.0.0.1]:{sink_port}",
        })

    def start(self) -> "PostfixSigningRelay":
        self.dkim.start()
        try:
            super().start()
        except Exception:
            self.dkim.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.dkim.stop()


class PostfixBouncingMTA(Postfix):
    """The final destination for `domain`: accepts every RCPT, then bounces with a real DSN.

    Mail for `valid` local parts is discarded (logged status=sent); for
    `full` ones it is deferred (4.2.2 Mailbox full), retried every second and
    bounced once older than `queue_lifetime` seconds (0: after one attempt),
    with a delay warning after `delay_warning` seconds if > 0; for anyone
    else it bounces at once with 5.1.1. Mail to `operator_domain` (the
    bounces) goes to [127.0.0.1]:operator_mx_port, anything else fails 5.4.4.
    `routes` adds or overrides transport entries, e.g. {"recipient.test":
    "smtp:[127.0.0.1]:2526"} to bounce a downstream server's 550 (with
    Remote-MTA and an smtp Diagnostic-Code) instead of "X-Postfix; User unknown".
    """

    def __init__(self, workdir: Path, listen_port: int | None = None, *, operator_domain: str,
                 operator_mx_port: int, domain: str = "recipient.test", valid: tuple[str, ...] = ("alice",),
                 full: tuple[str, ...] = (), queue_lifetime: int = 3, delay_warning: int = 0,
                 routes: dict[str, str] | None = None, hostname: str | None = None) -> None:
        self.domain, self.operator_domain, self.operator_mx_port = domain, operator_domain, operator_mx_port
        nexthop = f"smtp:[127.0.0.1]:{operator_mx_port}"
        transports = {**{f"{user}@{domain}": "discard:delivered" for user in valid},
                      **{f"{user}@{domain}": "retry:4.2.2 Mailbox full" for user in full},
                      domain: "error:5.1.1 User unknown", operator_domain: nexthop, f".{operator_domain}": nexthop,
                      **(routes or {})}
        super().__init__(workdir, listen_port, hostname or f"mx.{domain}", transports=transports, settings={
            "relay_domains": domain,
            "smtpd_reject_unlisted_recipient": "no",  # else smtpd itself answers 550 for error: transports
            "default_transport": "error:5.4.4 no route to this destination in the test",
            "maximal_queue_lifetime": f"{queue_lifetime}s",
            "bounce_queue_lifetime": f"{queue_lifetime}s",
            "delay_warning_time": f"{delay_warning}s",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "1s",
        })
