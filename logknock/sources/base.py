"""The protocol every live log source follows, and the few helpers they share.

A source runs on its own thread: the daemon calls `read(stop)` and feeds each
record it yields to the pipeline. `read` blocks while there is nothing new, but
never longer than `WAIT` seconds at a time, so it notices `stop` and returns.
A failure the daemon should retry (with backoff) is raised as `SourceError`;
the daemon then builds a new source with `resume=position()`.

Constructors take `resume` (the saved `position()`, or None) and `since` (a
wall-clock epoch: without a usable resume position, start at records newer
than this).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol

from ..models import LogRecord

WAIT = 1.0  # the longest a source blocks before it looks at `stop` again


class Source(Protocol):
    name: str  # "journal", "kmsg", "file:/var/log/x"

    def read(self, stop: threading.Event) -> Iterator[LogRecord]:
        """Yield records as they come until `stop` is set; raise SourceError to be retried."""
        ...

    def position(self) -> str | None:
        """The resume token of the last record yielded, saved in the state file."""
        ...
