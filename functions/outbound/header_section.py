"""One strict reading of a submitted message's header section (RFC 5322 2.2, 3.6).

The From: domain the relay checks must be the From: a receiver's DMARC
check reads, and parsers disagree about anything ambiguous: a bare CR or LF,
a line that is neither a field nor a continuation, white space before the
colon, two From: fields. So the relay reads the header section once, this
way, for the check and for what it signs and delivers, and refuses a
message it cannot read unambiguously instead of guessing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from runtime import replies
from runtime.errors import RelayError

# RFC 5322 3.6: fields a message may carry at most once.
SINGLE = frozenset({"from", "sender", "date", "reply-to", "to", "cc", "bcc", "message-id", "in-reply-to",
                    "references", "subject"})
_FIELD_NAME = re.compile(rb"[!-9;-~]+")
_WSP = b" \t"
# C0 controls but HTAB, and DEL: no line of a header section may carry them.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# Line breaks of Unicode that a decoding parser may split a line at.
_UNICODE_BREAKS = ("\x85", "\u2028", "\u2029")
_BODY_LINE_END = re.compile(rb"\r\n|\r|\n")
_TRACE_UNSAFE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


class MalformedHeaderSection(RelayError):
    """The header section cannot be read unambiguously; the 5xx says where."""

    def __init__(self, detail: str) -> None:
        super().__init__(replies.HEADER_SECTION_MALFORMED.format(detail=detail), detail)


class NulInMessage(RelayError):
    """A NUL byte anywhere in a member's message: receivers truncate or drop at it, differently."""

    def __init__(self) -> None:
        super().__init__(replies.MESSAGE_HAS_NUL)


@dataclass(frozen=True)
class Field:
    name: str
    raw: bytes  # the field's lines as submitted, each ending in CRLF: what is signed and delivered

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def value(self) -> str:
        """RFC 5322 2.2.3 unfolding: the CRLFs before continuation white space go, nothing else."""
        text = self.raw.decode("utf-8").split(":", 1)[1]
        return text.replace("\r\n", "").strip(" \t")


@dataclass(frozen=True)
class HeaderSection:
    fields: tuple[Field, ...]
    body: bytes

    def all(self, name: str) -> list[Field]:
        key = name.lower()
        return [f for f in self.fields if f.key == key]

    def first(self, name: str) -> Field | None:
        found = self.all(name)
        return found[0] if found else None


def read(message: bytes) -> HeaderSection:
    """The fields and the body of `message`; MalformedHeaderSection if any line is ambiguous."""
    end = message.find(b"\r\n\r\n")
    if message.startswith(b"\r\n"):
        head, body = b"", message[2:]
    elif end < 0:
        head, body = message, b""
    else:
        head, body = message[:end + 2], message[end + 4:]
    if head and not head.endswith(b"\r\n"):
        head += b"\r\n"
    fields: list[tuple[str, list[bytes]]] = []
    for number, line in enumerate(head.split(b"\r\n")[:-1], start=1):
        _check_line(number, line)
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise MalformedHeaderSection(f"line {number} continues no field")
            if not line.strip(_WSP):
                raise MalformedHeaderSection(f"line {number} holds only white space")
            fields[-1][1].append(line)
            continue
        fields.append((_field_name(number, line), [line]))
    out = tuple(Field(name, b"".join(part + b"\r\n" for part in lines)) for name, lines in fields)
    _check_counts(out)
    return HeaderSection(out, body)


def _check_line(number: int, line: bytes) -> None:
    bad = _CONTROL.search(line)
    if bad:
        what = {b"\r": "a bare CR", b"\n": "a bare LF", b"\x00": "a NUL byte"}.get(bad.group(), "a control character")
        raise MalformedHeaderSection(f"line {number} holds {what}")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedHeaderSection(f"line {number} is not UTF-8") from None
    if any(mark in text for mark in _UNICODE_BREAKS):
        raise MalformedHeaderSection(f"line {number} holds a Unicode line break")


def _field_name(number: int, line: bytes) -> str:
    match = _FIELD_NAME.match(line)
    rest = line[match.end():] if match else line
    if match and rest[:1] == b":":
        return match.group().decode("ascii")
    if match and rest[:1] in (b" ", b"\t") and rest.lstrip(_WSP)[:1] == b":":
        raise MalformedHeaderSection(f"line {number}: white space before the colon of {match.group().decode()!r}")
    raise MalformedHeaderSection(f"line {number} is neither a header field nor a continuation")


def _check_counts(fields: tuple[Field, ...]) -> None:
    seen: dict[str, int] = {}
    for f in fields:
        seen[f.key] = seen.get(f.key, 0) + 1
    for key in sorted(SINGLE):
        if seen.get(key, 0) > 1:
            raise MalformedHeaderSection(f"{seen[key]} {key.title()}: fields (RFC 5322 allows one)")


def refuse_nul(message: bytes) -> None:
    if b"\x00" in message:
        raise NulInMessage()


def crlf_body(body: bytes) -> bytes:
    """Every line end of the body as CRLF, so a receiver cannot read a bare CR or LF as a line (or end of data)."""
    if body.count(b"\r") == body.count(b"\n") == body.count(b"\r\n"):
        return body
    return _BODY_LINE_END.sub(b"\r\n", body)


def trace_text(text: object, limit: int = 100) -> str:
    """Client-supplied text (a HELO name, a peer) made safe to copy into a header: no CR, LF, NUL or other control."""
    return _TRACE_UNSAFE.sub("", str(text))[:limit]
