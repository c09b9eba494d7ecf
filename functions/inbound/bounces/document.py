"""A message prepared for the readers: decoded headers, the human-readable text, the machine parts.

Everything here is read from attacker-written bytes, so nothing raises:
headers with raw 8-bit bytes arrive as `Header` objects, charsets may be
unknown, parts may lie about their type. The walk is bounded in parts,
depth and time; `Unreadable` says which bound a message went over.
"""
from __future__ import annotations

import email
import re
import time
from dataclasses import dataclass, field
from email.header import Header, decode_header, make_header
from email.message import Message
from typing import Any

MAX_PARTS = 500
MAX_DEPTH = 20
MAX_TEXT = 256 * 1024
MAX_SECONDS = 2.0

RETURNED_TYPES = ("message/rfc822", "message/global", "text/rfc822-headers", "message/rfc822-headers",
                  "message/global-headers")
STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")

# Where the returned original starts in a plain-text bounce, as the MTAs word it.
_ORIGINAL = re.compile(
    r"^\s*(-+\s*)?(this is a copy of the message|below this line is a copy of the message|"
    r"original message( follows|\s*-)|(the )?original message (headers )?(is|are) (attached|included|below)|"
    r"unsent message follows|returned message|message headers follow|included is a copy of the message|"
    r"below is a copy of the original message|the header of the original message|"
    r"content-type: message/rfc822|original message header|"
    r"headers of your message|your message headers|\*+ original message|\*+ +end of message|"
    r"start of returned message|unsent message below)", re.I)

_SCRIPT = re.compile(r"(?is)<(script|style).*?</\1>")
_BREAK = re.compile(r"(?i)<br\s*/?>|</p>|</div>|</tr>|</li>")
_TAG = re.compile(r"<[^>]{0,2000}>")


class Unreadable(Exception):
    """Over a bound: recorded as unreadable with this reason instead of being read."""


def header_text(message: Message | None, name: str) -> str:
    """A header as text, whatever shape it came in (str, Header with 8-bit bytes, RFC 2047 words)."""
    if message is None:
        return ""
    try:
        value = message.get(name)
    except Exception:
        return ""
    return "" if value is None else value_text(value)


def value_text(value: Any) -> str:
    """One header value as text: each of a field's repeated values is read on its own."""
    try:
        if isinstance(value, Header):
            return str(make_header(decode_header(value)))
        text = str(value)
        if "=?" in text:
            return str(make_header(decode_header(text)))
        return text
    except Exception:
        return str(value) if not isinstance(value, Header) else value.encode()


def payload_text(part: Message) -> str:
    """A leaf part's body, decoded from its transfer encoding and charset."""
    try:
        raw = part.get_payload(decode=True)
    except Exception:
        raw = None
    if raw is None:
        payload = part.get_payload()
        return payload if isinstance(payload, str) else ""
    raw = raw[:MAX_TEXT]
    charset = "utf-8"
    try:
        charset = part.get_content_charset() or "utf-8"
        return raw.decode(charset, "replace")
    except (LookupError, TypeError, ValueError):
        return raw.decode("utf-8", "replace")


@dataclass
class Document:
    message: Message
    subject: str = ""
    sender: str = ""
    parts: list[Message] = field(default_factory=list)
    text: str = ""
    lines: list[str] = field(default_factory=list)
    status_part: Message | None = None
    returned: Message | None = None
    returned_text: str = ""
    deadline: float = 0.0
    forwarded: bool = False
    # Read once, asked for by several readers: decoded headers, the prose as one line, the DSN's blocks.
    _headers: dict[str, str] = field(default_factory=dict, repr=False)
    _prose: str | None = field(default=None, repr=False)
    status_blocks: list[Message] | None = field(default=None, repr=False)

    def header(self, name: str) -> str:
        key = name.lower()
        if key not in self._headers:
            self._headers[key] = header_text(self.message, name)
        return self._headers[key]

    @property
    def prose(self) -> str:
        """The human-readable lines as one line of single-spaced words."""
        if self._prose is None:
            self._prose = " ".join(" ".join(self.lines).split())
        return self._prose

    def has_header(self, name: str) -> bool:
        try:
            return self.message.get(name) is not None
        except Exception:
            return False


def walk(message: Message, deadline: float) -> list[Message]:
    """Every part, depth first, without recursion; over a bound raises Unreadable."""
    parts: list[Message] = []
    stack: list[tuple[Message, int]] = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Unreadable(f"MIME nesting deeper than {MAX_DEPTH}")
        parts.append(part)
        if len(parts) > MAX_PARTS:
            raise Unreadable(f"more than {MAX_PARTS} MIME parts")
        if time.monotonic() > deadline:
            raise Unreadable(f"reading took longer than {MAX_SECONDS:g}s")
        # The blocks of a delivery-status part are fields, not MIME parts: rfc3464 reads them with its own cap.
        payload = part.get_payload() if part.is_multipart() and part.get_content_type() not in STATUS_TYPES else None
        if isinstance(payload, list):
            stack.extend((p, depth + 1) for p in reversed(payload) if isinstance(p, Message))
    return parts


def prepare(message: Message, deadline: float) -> Document:
    doc = Document(message, subject=header_text(message, "Subject"), sender=header_text(message, "From"),
                   deadline=deadline)
    doc.parts = walk(message, deadline)
    texts: list[str] = []
    returned_inside: set[int] = set()
    for part in doc.parts:
        if id(part) in returned_inside:
            continue
        ctype = part.get_content_type()
        if ctype in STATUS_TYPES and doc.status_part is None:
            doc.status_part = part
        elif ctype in RETURNED_TYPES and part is not message:
            if doc.returned is None:
                doc.returned = _returned(part)
                doc.returned_text = payload_text(part) if ctype.endswith("headers") else ""
            returned_inside.update(id(p) for p in walk(part, deadline)[1:])
        elif part.get_content_maintype() == "multipart" and not part.is_multipart() and len(texts) < 4:
            texts.append(payload_text(part))  # its boundary never came: the body is all there is
        elif part.get_content_maintype() == "text" and not part.is_multipart() and len(texts) < 4:
            if ctype == "text/html" and texts:
                continue
            texts.append(_plain(payload_text(part), ctype))
    doc.text = "\n".join(texts)[:MAX_TEXT]
    doc.lines = [line for text in texts for line in human_lines(text)]
    return doc


def human_lines(text: str) -> list[str]:
    """The lines before the returned original, stripped of line-end noise."""
    lines = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if _ORIGINAL.match(line):
            break
        lines.append(line.rstrip())
    return lines


def _plain(text: str, ctype: str) -> str:
    if ctype != "text/html":
        return text
    text = _SCRIPT.sub(" ", text)
    text = _BREAK.sub("\n", text)
    text = _TAG.sub(" ", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace("&nbsp;", " ")


def _returned(part: Message) -> Message | None:
    if part.get_content_type().endswith("headers"):
        try:
            return email.message_from_string(payload_text(part))
        except Exception:
            return None
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    return None
