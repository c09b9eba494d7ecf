"""Every SMTP reply the relay can send, with its enhanced status code.

Handlers, domain errors and the edge name replies from this catalog; no
other module of ours writes reply text, so an operator can grep one file for
what a client saw. The one other source is aiosmtpd's own answers to SMTP
syntax (a bad HELO, an unknown command), which the edge passes through with
the enhanced status their code stands for (runtime/smtp_edge.py).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    code: int
    status: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"

    def format(self, **values: object) -> "Reply":
        return Reply(self.code, self.status, self.text.format(**values))

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def as_dict(self) -> dict:
        return {"code": self.code, "status": self.status, "text": self.text}

    @classmethod
    def from_dict(cls, data: dict) -> "Reply":
        return cls(int(data["code"]), str(data["status"]), str(data["text"]))


# Session
GREETING = Reply(220, "2.0.0", "{hostname} ESMTP Atmosphere Mail")
BYE = Reply(221, "2.0.0", "Bye")
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, try again later")

# Authentication
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
AUTH_INVALID = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_PENDING = Reply(535, "5.7.8", "pending operator approval")
AUTH_SUSPENDED = Reply(535, "5.7.8", "account suspended")
AUTH_MECHANISM = Reply(504, "5.5.4", "Unsupported authentication mechanism {mechanism}; use AUTH PLAIN")
AUTH_ENCRYPTION_REQUIRED = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
AUTH_ALREADY = Reply(503, "5.5.1", "Already authenticated")
AUTH_SYNTAX = Reply(501, "5.5.2", "Cannot decode AUTH PLAIN credentials")
AUTH_ABORTED = Reply(501, "5.7.0", "Authentication aborted")
SESSION_SUSPENDED = Reply(550, "5.7.8", "account suspended")
AUTH_THROTTLED = Reply(454, "4.7.0", "Too many failed authentications from {peer}; try again later")
AUTH_NOT_OFFERED = Reply(502, "5.5.1", "AUTH not available here")
AUTH_USAGE = Reply(501, "5.5.4", "Syntax: AUTH PLAIN [initial-response]")

# Envelope
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
RECIPIENT_SUPPRESSED = Reply(550, "5.7.1", "Recipient {recipient} is on this member's suppression list ({reason})")
RELAY_DENIED = Reply(550, "5.7.1", "Relaying denied: {recipient} is not handled here")
BAD_ADDRESS = Reply(553, "5.1.3", "Malformed address {address}")

# Message
QUEUED = Reply(250, "2.0.0", "Ok: queued as {queue_id}")
# Over a cap but within maxHold (issue 14): accepted, and sent when the caps let it go
QUEUED_HELD = Reply(250, "2.0.0", "Ok: queued as {queue_id}; held by the sending limit until {resume}")
ACCEPTED = Reply(250, "2.0.0", "Ok: message accepted")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
LINE_TOO_LONG = Reply(500, "5.5.6", "Line too long (see RFC 5321 4.5.3.1.6)")
FROM_NOT_ENROLLED = Reply(550, "5.7.1", "From: domain {domain} is not enrolled for this member")
FROM_NOT_VERIFIED = Reply(550, "5.7.1", "From: domain {domain} is not verified yet: publish its DKIM records and the"
                          " email.atmos.attestation record in your repo; the relay checks every minute")
FROM_MISSING = Reply(550, "5.6.0", "Message has no usable From: header")
MESSAGE_MALFORMED = Reply(550, "5.6.0", "Message is malformed: {detail}")
RATE_LIMITED = Reply(451, "4.7.1", "{detail}")
# Over a cap further than limits.maxHold from release (issue 14): when the caps let mail go again
RATE_LIMITED_UNTIL = Reply(451, "4.7.1", "{window} sending limit of {cap} reached (tier {tier});"
                                         " sending resumes at {resume}")
# One message with more recipients than a cap allows in its window: it could never be released
CAP_BELOW_MESSAGE = Reply(452, "4.5.3", "{window} sending limit is {cap} recipients (tier {tier});"
                                        " send to the others in another message")
# A message whose header section or From: receivers could read in more than one way (functions/outbound/header_section.py)
HEADER_SECTION_MALFORMED = Reply(550, "5.6.0", "Malformed header section: {detail}")
FROM_UNREADABLE = Reply(550, "5.6.0", "From: field {detail}")
MESSAGE_HAS_NUL = Reply(550, "5.6.0", "Message contains NUL bytes")

# Delivery: what the recipient domain's DNS said (functions/outbound/mx_resolver.py)
DOMAIN_NOT_FOUND = Reply(550, "5.1.2", "Domain {domain} does not exist")
MX_LOOKUP_FAILED = Reply(451, "4.4.3", "MX lookup for {domain} failed: {error}")
NULL_MX = Reply(556, "5.1.10", "Domain {domain} does not accept mail (null MX)")
MX_ADDRESS_LOOKUP_FAILED = Reply(451, "4.4.3", "Address lookup for the MX hosts of {domain} failed")
MX_NO_ADDRESS = Reply(550, "5.4.4", "No address for any mail exchanger of {domain}")

# Refusals of an operator's or a producer's request; the detail says what is wrong
INVALID_IDENTIFIER = Reply(550, "5.1.0", "{detail}")
MEMBER_REFUSED = Reply(550, "5.7.1", "{detail}")
REPLAY_REFUSED = Reply(550, "5.6.0", "{detail}")

# Failures of our own
TEMPORARY_FAILURE = Reply(451, "4.3.0", "Temporary local problem, please try again later")
FUNCTION_TIMEOUT = Reply(451, "4.3.0", "Processing timed out, please try again later")

# Connections and lines a hostile client can send (runtime/smtp_accept.py, runtime/smtp_edge.py)
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections from your address, try again later")
LISTENER_FULL = Reply(421, "4.7.0", "Too many connections, try again later")
AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication line too long")
