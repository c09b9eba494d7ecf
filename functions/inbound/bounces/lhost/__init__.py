"""One reader per MTA family: each recognises its own bounces (headers, wording) and reads them its way.

A module has NAME, recognises(doc) and read(doc) -> list[Bounced] | None;
FAMILIES is the order they are asked in (the most specific first).
"""
from functions.inbound.bounces.lhost import (
    exchange,
    exim,
    gmail,
    googlegroups,
    imailserver,
    mcafee,
    notes,
    office365,
    postfix,
    qmail,
    sendmail,
    verizon,
    yahoo,
)

FAMILIES = [googlegroups, exchange, office365, mcafee, imailserver, notes, verizon, postfix, sendmail, exim, qmail, gmail, yahoo]
