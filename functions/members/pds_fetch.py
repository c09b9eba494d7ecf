"""Fetching JSON from a URL a member chose (its PDS, its did:web host) without lending it the relay's network.

A member writes its PDS endpoint into its DID document and the relay
fetches from it every minute. Pointed at 127.0.0.1, 10.0.0.0/8 or the cloud
metadata address, that fetch would probe the operator's network from
inside. So the host is resolved here, an address that is not public is
refused (unless `atproto.allowPrivateAddresses`, for tests and private
deployments), and the connection goes to the very address that was checked,
never to a second resolution that a rebinding DNS server could answer
differently. Outside that setting plain http is refused too. Redirects are
not followed; the answer is cut at MAX_BODY and the whole exchange, the
DNS lookup included, at the timeout, however slowly the server dribbles.
"""
from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit

MAX_BODY = 1 << 20
_USER_AGENT = "atmos-relay attestation check"


class FetchFailed(Exception):
    """No answer: the server could not be reached, answered too slowly or too much, or sent no JSON."""


class FetchRefused(FetchFailed):
    """The URL was not fetched at all: it points where the relay does not go for a member."""


def address_refusal(address: str) -> str:
    """Why the relay will not connect to `address` for a member ('' when it is a public address)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):  # an IPv4 address carried inside IPv6 is judged as itself
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            ip = embedded
    for kind in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return f"{ip} is a {kind.replace('_', '-')} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return ""


def _addresses(host: str, port: int, timeout: float) -> list:
    """getaddrinfo, given up on after `timeout`: the member's DNS may be as slow as it likes to answer."""
    found: dict[str, Any] = {}

    def look_up() -> None:
        try:
            found["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            found["error"] = exc

    lookup = threading.Thread(target=look_up, name="pds-lookup", daemon=True)
    lookup.start()
    lookup.join(timeout)
    if lookup.is_alive():
        raise FetchFailed(f"{host}: no DNS answer within {timeout:g}s")
    if "error" in found:
        raise FetchFailed(f"{host}: cannot resolve ({found['error']})")
    return found["infos"]


def resolve(host: str, port: int, allow_private: bool, timeout: float = 5.0) -> str:
    """The one address to connect to: the first the host resolves to that the relay may reach."""
    infos = _addresses(host, port, timeout)
    refusals = []
    for info in infos:
        address = str(info[4][0])
        refusal = "" if allow_private else address_refusal(address)
        if not refusal:
            return address
        refusals.append(refusal)
    raise FetchRefused(f"{host} resolves only to addresses the relay does not fetch from for a member: "
                       f"{'; '.join(dict.fromkeys(refusals))} (atproto.allowPrivateAddresses is off)")


def get_json(url: str, timeout: float, allow_private: bool, member_chosen: bool = True) -> tuple[int, Any]:
    """GET `url`: its status and JSON body (None when the body is not JSON). Raises FetchFailed / FetchRefused.

    `member_chosen=False` is for the operator's own PLC directory: any address, http or https.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchRefused(f"{url}: not an http(s) URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise FetchRefused(f"{url}: {exc}") from exc
    deadline = time.monotonic() + timeout
    address = resolve(parts.hostname, port, allow_private or not member_chosen, timeout)
    if member_chosen and parts.scheme != "https" and not allow_private:
        raise FetchRefused(f"{url}: a member's server is fetched over https only")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rpartition("@")[2]
    left = max(deadline - time.monotonic(), 0.1)
    return _exchange(parts.scheme, parts.hostname, address, port, path, host_header, left, timeout)


def _exchange(scheme: str, host: str, address: str, port: int, path: str, host_header: str,
              left: float, timeout: float) -> tuple[int, Any]:
    """The request and its answer within `left` seconds (what is left of `timeout`)."""
    try:
        raw = socket.create_connection((address, port), timeout=left)
    except OSError as exc:
        raise FetchFailed(f"{host} ({address}) port {port}: {exc}") from exc
    overdue = threading.Event()

    def cut_off() -> None:
        overdue.set()
        try:
            raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    watchdog = threading.Timer(left, cut_off)
    watchdog.start()
    try:
        sock = ssl.create_default_context().wrap_socket(raw, server_hostname=host) if scheme == "https" else raw
        conn = http.client.HTTPConnection(host, port, timeout=left)
        conn.sock = sock
        conn.request("GET", path, headers={"Host": host_header, "Accept": "application/json",
                                           "User-Agent": _USER_AGENT})
        response = conn.getresponse()
        answer = response.status, _body(response)
    except (OSError, http.client.HTTPException) as exc:
        if overdue.is_set():
            raise FetchFailed(f"{host}: no whole answer within {timeout:g}s") from exc
        raise FetchFailed(f"{host}: {exc!r}"[:300]) from exc
    finally:
        watchdog.cancel()
        raw.close()
    if overdue.is_set():  # cut off mid-answer: what was read may look whole and is not
        raise FetchFailed(f"{host}: no whole answer within {timeout:g}s")
    return answer


def _body(response: http.client.HTTPResponse) -> Any:
    declared = response.getheader("Content-Length") or ""
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise FetchFailed(f"the answer is {declared} bytes, more than {MAX_BODY}")
    body = response.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise FetchFailed(f"the answer is more than {MAX_BODY} bytes")
    try:
        return json.loads(body or b"null")
    except (ValueError, RecursionError):
        return None
