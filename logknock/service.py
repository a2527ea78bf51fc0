"""What the daemon needs from its service manager: logging and sd_notify.

Under systemd (`NOTIFY_SOCKET`, `JOURNAL_STREAM` or `INVOCATION_ID` set) the
daemon logs to the journal with structured fields (`LOGKNOCK_SRC`,
`LOGKNOCK_SEQUENCE`, …: pass them as `extra=`) and reports READY, STATUS,
WATCHDOG and STOPPING; elsewhere it logs to stderr and the notifications are
no-ops. systemd is not PID 1 on the test machines: the journal handler is
exercised there against a journald the tests start, the notify protocol
against a datagram socket the tests bind.
"""

from __future__ import annotations

import logging
import os
import sys
import time

FORMAT = "%(levelname)s %(message)s"


def under_systemd() -> bool:
    return any(os.environ.get(k) for k in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "INVOCATION_ID"))


def setup_logging(verbose: bool = False) -> logging.Logger:
    root = logging.getLogger("logknock")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.handlers.clear()
    root.addHandler(_journal_handler() if under_systemd() else _stderr_handler())
    root.propagate = False
    return root


def _stderr_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("logknock: " + FORMAT))
    return handler


def _journal_handler() -> logging.Handler:
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return _stderr_handler()
    handler: logging.Handler = JournalHandler(SYSLOG_IDENTIFIER="logknock")
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


class Notifier:
    """sd_notify, when there is a NOTIFY_SOCKET; the watchdog at half its period."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        self.watchdog_every = usec / 2e6 if usec > 0 else None
        self._last_ping = 0.0

    def send(self, *lines: str) -> None:
        if not self.enabled:
            return
        from systemd import daemon

        daemon.notify("\n".join(lines))

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def ping(self) -> None:
        """Call often; sends WATCHDOG=1 at most every half watchdog period."""
        now = time.monotonic()
        if self.watchdog_every is not None and now - self._last_ping >= self.watchdog_every:
            self._last_ping = now
            self.send("WATCHDOG=1")
