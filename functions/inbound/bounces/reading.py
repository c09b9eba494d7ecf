"""What a bounce, a feedback report or an auto-reply says, as one plain value the classifier maps.

`kind` is what the message is: `bounce`, `complaint`, `auto-reply`,
`none` (not one of those: a reply, operator mail, spam) or `unreadable`
(over the bounds on parts, nesting or time; `problem` says which).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message


@dataclass
class Bounced:
    """One recipient a report is about: Sisimai's reason beside the enhanced status it came with."""

    recipient: str
    reason: str
    status: str = ""
    kind: str = "soft"  # hard | soft | complaint | none
    action: str = "failed"  # failed | delayed | complained | delivered | replied
    diagnostic: str = ""
    command: str = ""
    original: str = ""  # the address as the sender gave it (Original-Recipient, an alias it expanded from)

    @property
    def sent_to(self) -> str:
        """The address the relay sent to: where the report names it, the original before any rewriting."""
        return self.original or self.recipient

    def as_dict(self) -> dict:
        return {"address": self.recipient, "kind": self.kind, "status": self.status, "reason": self.reason,
                "action": self.action, "diagnostic": self.diagnostic[:500]}


@dataclass
class Feedback:
    """The fields of an RFC 5965 report that attribution and the operator use."""

    feedback_type: str
    user_agent: str = ""
    original_mail_from: str = ""
    fields: dict = field(default_factory=dict)


@dataclass
class Reading:
    kind: str
    reader: str = ""
    recipients: list[Bounced] = field(default_factory=list)
    returned: Message | None = None
    feedback: Feedback | None = None
    signals: list[str] = field(default_factory=list)
    problem: str = ""
    reporting_mta: str = ""

    def details(self) -> dict:
        """What the classifier records in `inbound_messages.details`."""
        out: dict = {"reader": self.reader}
        if self.reporting_mta:
            out["reporting_mta"] = self.reporting_mta
        if self.problem:
            out["unreadable"] = self.problem
        if self.signals:
            out["signals"] = self.signals
        if self.feedback is not None:
            out["report"] = self.feedback.fields
        return out
