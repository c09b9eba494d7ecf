"""Mail a provider sends back: feedback reports (RFC 5965) and auto-replies, built like the real ones."""
from __future__ import annotations

from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP


def arf(returned: bytes, *, feedback_type: str = "abuse", original_rcpt_to: str = "",
        original_mail_from: str = "", headers_only: bool = False, user_agent: str = "Yahoo!-Mail-Feedback/2.0",
        reporter: str = "feedback@arf.mail.yahoo.test", to: str = "fbl@atmos.test") -> bytes:
    """A feedback report about `returned` (the message as delivered), as a mailbox provider sends it."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = reporter
    report["To"] = to
    report["Subject"] = "FW: complaint about a message"
    report["Date"] = "Tue, 24 Nov 2026 12:00:00 +0000"
    report.attach(MIMEText("This is an email abuse report for a message you sent.\n"))
    fields = Message()
    fields.set_type("message/feedback-report")
    lines = [f"Feedback-Type: {feedback_type}", f"User-Agent: {user_agent}", "Version: 1",
             "Arrival-Date: Tue, 24 Nov 2026 11:59:00 +0000", "Source-IP: 127.0.0.1",
             "Reported-Domain: atmos.test"]
    if original_mail_from:
        lines.append(f"Original-Mail-From: <{original_mail_from}>")
    if original_rcpt_to:
        lines.append(f"Original-Rcpt-To: <{original_rcpt_to}>")
    fields.set_payload("\r\n".join(lines) + "\r\n")
    report.attach(fields)
    original = Message()
    if headers_only:
        original.set_type("text/rfc822-headers")
        original.set_payload(returned.split(b"\r\n\r\n", 1)[0].decode() + "\r\n")
    else:
        original.set_type("message/rfc822")
        from email import message_from_bytes
        original.set_payload([message_from_bytes(returned)])
    report.attach(original)
    return report.as_bytes(policy=SMTP)


def vacation_reply(to: str, subject: str = "Out of office: back on Monday") -> bytes:
    return (f"From: Friend <friend@recipient.test>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            "Auto-Submitted: auto-replied\r\nX-Autoreply: yes\r\nPrecedence: auto_reply\r\n"
            "Date: Tue, 24 Nov 2026 12:00:00 +0000\r\nMessage-ID: <vacation@recipient.test>\r\n\r\n"
            "I am away until Monday.\r\n").encode()


def strip_header(raw: bytes, name: str) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    kept, skipping = [], False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line.lower().startswith(name.lower().encode() + b":")
        if not skipping:
            kept.append(line)
    return b"\r\n".join(kept) + b"\r\n\r\n" + body
