"""Typed errors that carry the SMTP reply they stand for.

A handler raises one of these instead of returning a half-done result; the
edge turns it into the reply, the HTTP gateway into a Lambda-style error.
"""
from __future__ import annotations

from runtime import replies
from runtime.replies import Reply


class RelayError(Exception):
    """A refusal with a definite reply; `detail` is for logs, never the client."""

    reply: Reply = replies.TEMPORARY_FAILURE

    def __init__(self, reply: Reply | None = None, detail: str = "") -> None:
        if reply is not None:
            self.reply = reply
        self.detail = detail
        super().__init__(str(self.reply) + (f" ({detail})" if detail else ""))


class FunctionTimeout(RelayError):
    reply = replies.FUNCTION_TIMEOUT


class FunctionNotFound(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Function not found: {name}")
        self.name = name


class ManifestError(Exception):
    """serverless.yml cannot be loaded; the message names the function and key."""


class BadRequest(ValueError):
    """An HTTP request the relay will not read (a body nested too deep, too many fields); the gateway answers `status`."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status
