"""The process's file descriptors: use all the kernel allows.

Every SMTP connection costs a descriptor. The soft RLIMIT_NOFILE of a
service is often 1024 while its hard limit is far higher, so the relay
raises the soft limit to the hard one at start, and warns when its
listeners' connection caps could still exceed it.
"""
from __future__ import annotations

import errno
import resource

from runtime.jsonlog import JsonLog

EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Descriptors the relay needs besides its SMTP sessions: stores, spool segments, HTTP, delivery.
RESERVE = 256


def raise_soft_limit(log: JsonLog) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard or soft == resource.RLIM_INFINITY:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("process.open_files_limit", soft=soft, hard=hard, error=str(exc))
        return soft
    log.info("process.open_files_limit", soft=hard, was=soft)
    return hard


def check_caps(log: JsonLog, limit: int, listeners: int, per_listener: int) -> None:
    """Warn when the connection caps alone could use every descriptor the process may open."""
    if limit != resource.RLIM_INFINITY and listeners * per_listener + RESERVE > limit:
        log.warning("smtp.connection_caps_above_open_files", open_files_limit=limit, listeners=listeners,
                    max_connections=per_listener, reserve=RESERVE)


def current_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
