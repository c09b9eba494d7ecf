"""Microsoft Exchange 2003 and earlier: "did not reach the following recipient(s)" and an MSEXCH code.

Each recipient line is `address on <date>` followed by an indented reason
and `MSEXCH:<component>:...:<code> (hex)`; the hex code is the cause.
"""
from __future__ import annotations

import re

from functions.inbound.bounces.document import Document
from functions.inbound.bounces.prose import scan
from functions.inbound.bounces.reading import Bounced

NAME = "exchange2003"
_CODES = {"000C05A6": "userunknown", "000B099C": "hostunknown", "000B09AA": "networkerror",
          "000C0595": "hostunknown", "000B0981": "networkerror", "000B0983": "networkerror",
          "000C05A5": "userunknown", "0000104C": "userunknown", "000D06A0": "filtered"}
_CODE = re.compile(r"MSEXCH:[^\s]*\s+\d+\s+\(([0-9A-F]{8})\)")


def recognises(doc: Document) -> bool:
    return "MSEXCH:" in doc.text or doc.has_header("X-MS-Embedded-Report") or \
        "did not reach the following recipient" in doc.text


def read(doc: Document) -> list[Bounced] | None:
    start = next((i for i, line in enumerate(doc.lines) if "did not reach the following recipient" in line), -1)
    if start < 0:
        return None
    found = scan(doc.lines[start + 1:], set())
    for rcpt in found:
        code = _CODE.search(rcpt.diagnostic)
        rcpt.reason = _CODES.get(code.group(1), "") if code else ""
    return found or None
