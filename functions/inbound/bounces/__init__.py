"""Reading bounces, feedback reports and auto-replies the way Sisimai does: `read(message) -> Reading`.

RFC 3464 / 3834 / 5965 readers, one small reader per MTA family in
`lhost/`, a reason table in Sisimai's vocabulary (`reasons`), and the
decision which reasons may suppress a recipient (`suppression_policy`).
"""
from functions.inbound.bounces.reader import UnreadableMessage, parse, read
from functions.inbound.bounces.reading import Bounced, Feedback, Reading

__all__ = ["Bounced", "Feedback", "Reading", "UnreadableMessage", "parse", "read"]
