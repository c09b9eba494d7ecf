"""`inbound-rcpt`: RCPT TO on the inbound MX. Only addresses we handle; 550 5.7.1 for all else."""
from __future__ import annotations

from functions.inbound import addresses
from runtime import replies
from runtime.context import LambdaContext
from runtime.errors import RelayError


def handler(event: dict, context: LambdaContext) -> dict:
    recipient = str(event.get("rcpt_to") or "")
    found = addresses.resolve(context.store.connection(), recipient, context.settings.operatorDomain)
    if found is None:
        context.logger.info("inbound.refused", recipient=recipient, peer=(event.get("session") or {}).get("peer"),
                            mail_from=event.get("mail_from"))
        raise RelayError(replies.RELAY_DENIED.format(recipient=recipient))
    return {"reply": replies.RECIPIENT_OK.as_dict(), "kind": found.kind}
