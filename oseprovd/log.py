"""Logging: structured journal fields when run by systemd, plain escaped stderr otherwise."""

from __future__ import annotations

import logging
import os
import sys

# One MESSAGE_ID per kind of event, so `journalctl MESSAGE_ID=...` finds them.
MSG_STARTED = "3c1a8f0d2b7e4c59a6d1e8f2b4c7a9d0"
MSG_READY = "5e2b9c4d7a1f4e8b9c3d6a2f1e7b8c4d"
MSG_STOPPING = "7a4d1e8b2c9f4a6e8d3b5c1f7e2a9b6c"
MSG_JOB = "b1e7c3a9d5f24b8e9a6c4d2f8e1b7a3c"


class _EscapingFormatter(logging.Formatter):
    """Caller-provided values may hold control characters; never let them forge lines."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return "".join(
            c if c.isprintable() or (c == "\n" and record.exc_info) else repr(c)[1:-1]
            for c in text
        )


def setup_logging(level: str) -> None:
    root = logging.getLogger()
    root.setLevel(level.upper())
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler | None = None
    if os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"):
        try:
            from systemd.journal import JournalHandler

            handler = JournalHandler(SYSLOG_IDENTIFIER="oseprovd")
        except ImportError:
            handler = None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_EscapingFormatter("oseprovd: %(levelname)s %(message)s"))
    root.addHandler(handler)
    # dbus-fast logs handler exceptions itself; ours are logged once, by bus/errors.py.
    logging.getLogger("dbus_fast").setLevel(logging.CRITICAL)
