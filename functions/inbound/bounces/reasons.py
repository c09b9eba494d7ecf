"""Why a recipient bounced, in Sisimai's vocabulary, from the diagnostic text, the enhanced status and the command.

The text decides first, because servers put the most specific cause there
(a 5.1.1 reply may say the sender is blocked); the status decides when the
text names no cause. User-unknown wording after DATA is `filtered`: the
address was accepted, a filter refused the message. Hard or soft follows
the reason the way Sisimai maps it.
"""
from __future__ import annotations

import re

HARD = frozenset({"userunknown", "hostunknown", "hasmoved"})
NEITHER = frozenset({"delivered", "feedback", "vacation"})


class _Wording:
    """Phrases compiled into one pattern when first searched: every relay and edge process imports this
    table, and most never read a bounce."""

    __slots__ = ("_source", "_pattern")

    def __init__(self, source: str) -> None:
        self._source = source
        self._pattern: re.Pattern | None = None

    def search(self, text: str) -> re.Match | None:
        if self._pattern is None:
            self._pattern = re.compile(self._source)
        return self._pattern.search(text)


def _any(*phrases: str) -> _Wording:
    """One pattern over lower-cased text, each phrase starting a word.

    Matching without re.I is several times faster, and so is refusing at
    once every position inside a word, where none of the phrases starts.
    """
    return _Wording("(?<![a-z0-9])(?:" + "|".join(phrases) + ")")


# Ordered: the first reason whose wording matches wins.
TEXT = [
    ("norelaying", _any(r"(not configured|not allowed|not permitted) to relay", r"relay(ing)? (access )?denied")),
    ("networkerror", _any(r"name service error", r"(unable|not able|wasn.?t able) to establish (an )?smtp connection")),
    ("systemerror", _any(r"ldap (server|lookup)")),
    ("policyviolation", _any(r"potential security (issue|risk|threat)", r"unauthenticated email")),
    ("rejected", _any(r"sender (address )?(is |was )?(rejected|refused|denied|blocked|invalid|unknown|verify failed)",
                      r"(mail from|envelope sender|sender domain|sender address|from address|return path) .{0,40}(rejected|refused|denied|not allowed|invalid|unknown|does not exist)",
                      r"domain of sender", r"sender not (allowed|permitted)", r"bad sender", r"invalid sender",
                      r"not a registered gateway user", r"you are not allowed to post", r"not allowed to post")),
    ("notaccept", _any(r"does not accept (any )?(e-?)?mail", r"null mx", r"no mail (is )?accepted",
                       r"not accepting (any )?(e-?)?mail", r"accepts no mail", r"no mx record",
                       r"indicated no smtp service", r"(does not|doesn.?t) (accept|receive) (e-?)?mail")),
    ("norelaying", _any(r"relay(ing)? (access )?(denied|not permitted|not allowed|prohibited)",
                        r"unable to relay", r"not permitted to relay", r"we do not relay",
                        r"no relaying allowed", r"relaying mail to .{0,60} is not allowed",
                        r"not (a )?(local|valid) (host|domain).{0,60}relay", r"insecure mail relay")),
    ("virusdetected", _any(r"\bvirus(es)?\b.{0,60}(detected|found|infected)", r"infected with", r"malware",
                           r"message contains a virus", r"\bvirus\b")),
    ("blocked", _any(r"ip reputation", r"low reputation", r"(ip|sender|domain) reputation")),
    ("toomanyconn", _any(r"too many (connections|concurrent|simultaneous|sessions)", r"connection (rate )?limit",
                         r"too many smtp sessions", r"frequency limited", r"too many recipients", r"exceeded the maximum number of connections",
                         r"max(imum)? (number of )?connections")),
    ("speeding", _any(r"too many (messages|recipients|emails) (from|sent|in)", r"sending rate",
                      r"rate limit(ed)?\b", r"please slow down", r"throttl")),
    ("exceedlimit", _any(r"message (size )?exceeds? (the )?(local|fixed|maximum) (message )?size",
                         r"exceeded (the )?message size", r"exceeds? (the )?(local|fixed) maximum", r"message length exceeds")),
    ("mesgtoobig", _any(r"message (is )?too (big|large)", r"message size exceeds", r"size exceeds",
                        r"exceeds (the )?(maximum|size) (message )?(size|limit)", r"mail size limit",
                        r"message file too big", r"line too long", r"size exceeded", r"size limit exceeded")),
    ("mailboxfull", _any(r"mailbox (is )?full", r"mail ?box.{0,60}full", r"(over|exceeded?|exceeds|exceeding)( (the|his|her|their|its|storage))? ?quota",
                         r"quota (exceeded|full|violation)", r"\bis full\b", r"insufficient (disk|system)? ?(space|storage)",
                         r"(disk|storage|mailfolder|mailbox) (space )?(is )?(full|exceeded)",
                         r"(not enough|no more) (disk )?space", r"mail box.{0,60}exceeded", r"user'?s (mailbox|mailfolder|disk)",
                         r"exceeded storage allocation", r"number of messages in recipient.s mailbox exceeded",
                         r"too many messages in (the|this) mailbox", r"mailbox size limit",
                         r"would be over the allowed quota", r"account is over quota", r"out of storage")),
    ("suspend", _any(r"(mailbox|account|address|user) (is |has been )?(currently )?(suspended|disabled|deactivated|inactive|"
                     r"locked|frozen|expired|not active|temporarily disabled|on hold|blocked|bloque)",
                     r"(disabled|suspended|inactive|deactivated|locked) (mailbox|account|user|recipient)",
                     r"recipient (address )?(is )?(suspended|inactive|disabled)", r"account has been disabled",
                     r"extended inactivity", r"mailbox unavailable.{0,60}(inactive|disabled)", r"is no longer active",
                     r"this account has been (closed|blocked|temporarily)", r"mailbox (has been )?blocked due to inactivity")),
    ("hasmoved", _any(r"has been moved", r"has moved to", r"address (has )?changed", r"no longer (a |at |with )",
                      r"is now at ", r"new address")),
    ("securityerror", _any(r"authentication (required|failed|credentials)", r"\bauth(entication)? .{0,60}failed",
                           r"must (use|issue) (a )?starttls", r"tls (is )?required", r"encryption required",
                           r"sender is not authenticated", r"not authorized to send", r"5\.7\.(0|8|9|11|14|15)\b.{0,60}auth",
                           r"certificate")),
    ("spamdetected", _any(r"\bspam\b", r"blacklisted url", r"content rejected", r"\bube\b", r"unsolicited", r"junk (e-?)?mail", r"bulk mail", r"content.{0,60}(rejected|refused).{0,60}spam",
                          r"message (looks|appears) (like|to be) (spam|unsolicited)", r"spamhaus.{0,60}content",
                          r"classified as (spam|junk)", r"spam(my|ish)", r"\buce\b", r"score", r"\bphish")),
    ("policyviolation", _any(r"dmarc")),
    ("blocked", _any(r"\bspf\b", r"dkim", r"block ?list(ed)?", r"black ?list(ed)?", r"deny ?list", r"\brbl\b", r"\bdnsbl\b",
                     r"spamhaus", r"spamcop", r"barracuda", r"sorbs", r"\bblocked\b", r"your ip", r"client host .{0,60} blocked",
                     r"(ip|host|address|network|domain) .{0,60}(is |has been )?(listed|blocked|banned|blacklisted)",
                     r"listed (on|in|at|by)", r"reverse (dns|lookup)", r"\bptr\b", r"\brdns\b",
                     r"poor reputation", r"bad reputation", r"reputation", r"banned (sending )?ip", r"removal from (this|the) list",
                     r"connection (refused|rejected|denied)", r"not allowed to send", r"refused to talk",
                     r"dynamic ip", r"residential", r"smtp server of your isp",
                     r"(your|the) (server|ip|host|domain) (is|has been) (not )?(allowed|permitted|rejected|refused|banned)",
                     r"helo (command )?rejected", r"(invalid|bad) (helo|ehlo)", r"host(name)? (lookup|name) failed",
                     r"user complaints", r"not accepting connections", r"rejected by (our |the )?(local )?policy")),
    ("policyviolation", _any(r"policy (violation|reasons|rejection)", r"header error",
                             r"potential security (issue|risk|threat)",
                             r"multiple .{0,20}addresses in from", r"violat(es|ion of) .{0,60}polic(y|ies)",
                             r"prohibited (attachment|file)", r"attachment .{0,60}(not allowed|prohibited|blocked)",
                             r"content (policy|filter)", r"message (contains|has) .{0,60}(prohibited|forbidden|not allowed)",
                             r"\bpolicy\b", r"not compliant")),
    ("filtered", _any(r"(domain|address|content|recipient|sender).{0,20} filter", r"filtered", r"mail filter",
                      r"refused by (the )?recipient", r"recipient (has )?(refused|rejected) (your|this|all)",
                      r"does not accept mail from", r"has restricted", r"not accept(ing)? (e-?)?mail from")),
    ("userunknown", _any(r"user(name)? (unknown|not found|does not exist|doesn.?t exist|not exist)",
                         r"unknown (user|recipient|address|local|mailbox|e-?mail|account)",
                         r"no such (user|mailbox|recipient|address|account|person|local user|e-?mail)",
                         r"(recipient|mailbox|address|account|user|e-?mail) (address )?(is )?(does not|doesn.?t|not) exist",
                         r"(mailbox|recipient|address|account|user)( address)? (is )?(unknown|not found|invalid|unavailable|not available)",
                         r"invalid (recipient|mailbox|address|user|account|e-?mail)",
                         r"not (a )?(valid|known) (user|mailbox|recipient|address)", r"unrouteable address",
                         r"no mailbox", r"not listed in", r"bad destination mailbox",
                         r"(recipient|address|user) (address )?rejected",
                         r"(does not|doesn.?t) have an? .{0,60}account", r"no (such )?account", r"not our customer",
                         r"unknown or illegal alias", r"mailbox not found", r"user (is )?not here",
                         r"not a known user", r"address (is )?no longer", r"addressee unknown",
                         r"recipient not found", r"user not listed", r"not have a mailbox",
                         r"the email account that you tried to reach does not exist", r"is not a valid",
                         r"destination (address|mailbox) (is )?(invalid|unknown)", r"unknown\b.{0,60}@",
                         r"mailbox unavailable", r"recipient name is not recognized", r"cannot be resolved",
                         r"not recognized", r"no valid recipients", r"undeliverable address", r"account (is )?(disabled|closed)")),
    ("hostunknown", _any(r"host (or domain name )?(not found|unknown)", r"unknown host", r"(domain|host) (does not|doesn.?t) exist",
                         r"(domain|host)( name)? (is )?(not found|unknown|invalid)", r"name or service not known",
                         r"no (mx|a) record", r"nxdomain", r"unrouteable mail domain", r"domain (is )?not (valid|found)",
                         r"no such (domain|host)", r"unknown domain", r"hostname (lookup|not)", r"mail exchanger",
                         r"domain not found", r"not (a )?(valid|resolvable) (domain|host)", r"host unknown",
                         r"invalid domain", r"domain is not reachable",
                         r"unable to resolve", r"dns (error|lookup|failure)")),
    ("notaccept", _any(r"does not accept (any )?(e-?)?mail", r"null mx", r"no mail (is )?accepted",
                       r"not accepting (any )?(e-?)?mail", r"accepts no mail")),
    ("systemfull", _any(r"(system|server|disk) (is )?full", r"out of (disk|memory)", r"insufficient system storage",
                        r"insufficient system resources")),
    ("expired", _any(r"(delivery|retry) (time|timeout|period)? ?(expired|exceeded)", r"expired", r"given up",
                     r"gave up", r"too long", r"(could not|was not|not) (be |been )?delivered (within|for)", r"cannot send message for",
                     r"retry time", r"unable to deliver (this )?message for", r"has not been delivered for",
                     r"queue ?time", r"giving up", r"no answer from", r"will be retried", r"timed? ?out",
                     r"did not accept our requests to connect", r"host not reachable", r"could not connect",
                     r"unable to connect", r"connection refused")),
    ("networkerror", _any(r"network (error|unreachable|is unreachable)", r"connection (reset|closed|dropped|lost)",
                          r"lost connection", r"routing loop", r"loop (was )?detected", r"too many hops",
                          r"mail loop", r"hop count exceeded", r"broken pipe", r"no route to host",
                          r"refused to accept your message",
                          r"try again later")),
    ("contenterror", _any(r"(bad|invalid|illegal) (message )?(content|header|character|mime)", r"header (error|syntax)",
                          r"message header", r"8-?bit", r"encoding", r"contains (invalid|illegal|bad)")),
    ("systemerror", _any(r"system (error|failure|problem)", r"server (error|failure)", r"internal (server )?error",
                         r"local (error|problem)", r"temporary (local )?problem", r"mail system problem",
                         r"i/o error", r"configuration error", r"service (is )?(currently )?(not )?(unavailable|available)",
                         r"remote server", r"unexpected", r"shutting down")),
    ("syntaxerror", _any(r"syntax error", r"improper sequence", r"command (not recognized|unrecognized)", r"unrecognized command",
                         r"bad sequence", r"command not implemented")),
    ("mailererror", _any(r"mailer error", r"x-unix", r"procmail", r"command output", r"exit (code|status)",
                         r"child status")),
    ("_rejected", _any(r"rejected", r"refused", r"denied")),
]

# RFC 3463 subject.detail → reason, used when the text names no cause.
STATUS = {
    "1.1": "userunknown", "1.2": "hostunknown", "1.3": "userunknown", "1.4": "userunknown", "1.5": "userunknown",
    "1.6": "hasmoved", "1.7": "rejected", "1.8": "rejected", "1.9": "rejected", "1.10": "notaccept",
    "2.0": "filtered", "2.1": "suspend", "2.2": "mailboxfull", "2.3": "exceedlimit", "2.4": "systemerror",
    "3.0": "onhold", "3.1": "systemfull", "3.2": "notaccept", "3.3": "systemerror", "3.4": "mesgtoobig",
    "3.5": "systemerror",
    "4.0": "networkerror", "4.1": "networkerror", "4.2": "networkerror", "4.3": "systemerror", "4.4": "hostunknown",
    "4.5": "toomanyconn", "4.6": "networkerror", "4.7": "expired",
    "5.1": "syntaxerror", "5.2": "syntaxerror", "5.3": "toomanyconn", "5.4": "syntaxerror", "5.6": "syntaxerror",
    "6.0": "contenterror", "6.1": "contenterror", "6.2": "contenterror", "6.3": "contenterror", "6.4": "contenterror",
    "6.5": "contenterror",
    "7.0": "securityerror", "7.1": "rejected", "7.2": "norelaying", "7.3": "securityerror", "7.4": "securityerror",
    "7.5": "securityerror", "7.6": "securityerror", "7.7": "securityerror", "7.8": "securityerror",
    "7.9": "securityerror", "7.13": "suspend", "7.14": "suspend", "7.17": "suspend", "7.18": "suspend",
    "7.20": "securityerror", "7.21": "securityerror", "7.22": "securityerror", "7.23": "securityerror",
    "7.24": "securityerror", "7.25": "blocked", "7.26": "blocked", "7.27": "notaccept",
}

_LISTED = re.compile(r"list|spamhaus|spamcop|relay|reputation|complaints|volume|\bisp\b|\bspf\b")
_CONTINUATION = re.compile(r"(?<=\s)[245]\d\d-(?:[245]\.\d{1,3}\.\d{1,3}\s)?")
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY = re.compile(r"(?<![\d.])([245])\d\d(?![\d.])")


def status_in(text: str) -> str:
    """The first enhanced status code in `text`, else the class of a bare reply code (550 → 5.0.0)."""
    text = text or ""
    found = _ENHANCED.search(text)
    if found:
        return ".".join(found.groups())
    code = _REPLY.search(text)
    return f"{code.group(1)}.0.0" if code else ""


def by_text(text: str) -> str:
    text = text.lower()
    for reason, pattern in TEXT:
        if pattern.search(text):
            return reason
    return ""


def by_status(status: str) -> str:
    parts = (status or "").split(".")
    if len(parts) != 3 or parts[0] not in ("4", "5"):
        return ""
    return STATUS.get(f"{int(parts[1]) if parts[1].isdigit() else parts[1]}.{parts[2]}", "")


def reason_of(diagnostic: str, status: str = "", command: str = "", action: str = "failed",
              dsn: bool = True) -> str:
    """Sisimai's reason name for one recipient (`dsn`: the command is known to be named when there was one)."""
    if action == "delivered" or status.startswith("2."):
        return "delivered"
    if action == "delayed" and not diagnostic:
        return "expired"
    reason = by_text(_CONTINUATION.sub("", " ".join((diagnostic or "").split())))
    specific = by_status(status)
    if reason == "_rejected":
        reason = specific if specific and specific != "userunknown" else "rejected"
    if reason in ("", "rejected", "systemerror", "networkerror", "securityerror", "expired") and specific in (
            "userunknown", "hostunknown", "mailboxfull", "hasmoved", "suspend", "mesgtoobig", "exceedlimit",
            "norelaying", "notaccept", "toomanyconn", "blocked"):
        reason = specific
    if specific == "blocked" and reason in ("policyviolation", "securityerror", "spamdetected"):
        reason = specific
    reason = reason or specific
    if reason == "hostunknown" and status.startswith("4."):
        return "networkerror"
    if reason == "userunknown" and (status.split(".")[1:2] in ([], ["0"], ["7"]) or specific == "filtered") and \
            command.upper() not in ("RCPT", "MAIL") and (dsn or command.upper() == "DATA"):
        return "filtered"
    if reason == "blocked" and command.upper() == "MAIL" and not _LISTED.search(diagnostic.lower()):
        return "rejected"
    if reason == "rejected" and command.upper() in ("MAIL", "DATA") and specific == "userunknown":
        return "userunknown"
    if reason == "rejected" and command.upper() in ("CONNECT", "HELO", "EHLO"):
        return "blocked"
    if not reason:
        return "onhold" if status in ("", "5.0.0", "4.0.0") else "undefined"
    return reason


def kind_of(reason: str, status: str = "") -> str:
    """hard, soft, or none (a delivery, a report, an auto-reply), as Sisimai maps them."""
    if reason in NEITHER:
        return "none"
    if reason in HARD:
        return "hard"
    if reason == "notaccept":
        return "soft" if status.startswith("4.") else "hard"
    return "soft"
