"""The file source: follows a log file that rsyslog writes, across rotations.

Trust: a file is trusted only when configured with `trust: kernel-only`, for a
file that only the kernel can fill (rsyslog writing `$inputname == "imklog"`
lines alone). Any process may send rsyslog a `<4>` datagram that lands in an
ordinary kern.log looking exactly like a kernel line. This class refuses no
setting: the configuration decides `trusted`, and records carry it.

Where it starts:
- with a resume position of the same file (same inode and first line, not
  shorter than the offset): right after the last line handed out, so lines
  written while the daemon was down are read once and no line twice;
- when the file was rotated while the daemon was down (the resume position
  names the renamed `PATH.1`): the rest of `PATH.1` first, then the new file
  from its start;
- with any other resume position (another file, or the file shrank): the
  start of the current file;
- without one: the end of the file (the start of its unfinished last line),
  so old knocks are never acted on. `since` is accepted like every source's,
  but a file's lines carry their time only in their text, which the envelope
  parser reads later: without a resume position the file starts at its end.
- a file that does not exist yet is waited for (no error), and read from its
  start when it appears.

Wake-ups come from watchdog on the directory (see `file_watch`); a `stat` of
the path every `poll_interval` seconds is the safety net when inotify
overflows or cannot watch. Rotation and truncation: see `file_follow`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator

from ..models import LogRecord
from .base import WAIT
from .file_follow import Follower
from .file_position import Position
from .file_watch import DirectoryWatch

log = logging.getLogger(__name__)

MIN_POLL = 0.01  # seconds: a smaller interval would only burn CPU


class FileSource:
    """Records from the lines of one log file; a record's position resumes after it."""

    def __init__(
        self,
        path: str,
        *,
        trusted: bool,
        envelope: str = "auto",
        resume: str | None = None,
        since: float = 0.0,
        poll_interval: float = 1.0,
        watch: bool = True,
    ) -> None:
        """`watch=False` leaves out inotify: the periodic `stat` alone finds new data."""
        self.name = f"file:{path}"
        self.path = path
        self.trusted = trusted
        self.envelope = envelope
        self.since = since
        self.poll_interval = max(MIN_POLL, min(poll_interval, WAIT))
        self.watch = watch
        self._token = _valid(self.name, resume)

    def position(self) -> str | None:
        """Where to resume: after the last record yielded (or where reading began)."""
        return self._token

    def read(self, stop: threading.Event) -> Generator[LogRecord, None, None]:
        """Yield each new line as a record until `stop` is set."""
        wake = threading.Event()
        watch = DirectoryWatch(self.path, wake) if self.watch else None
        follower = Follower(self.path, self._resume())
        try:
            while not stop.is_set():
                wake.clear()
                if watch is not None:
                    watch.refresh()
                for line, position in follower.lines():
                    yield self._record(line, position)
                    if stop.is_set():
                        return
                self._remember(follower.position())
                wake.wait(self.poll_interval)
        finally:
            follower.close()
            if watch is not None:
                watch.close()

    def _resume(self) -> Position | None:
        return Position.parse(self._token) if self._token else None

    def _record(self, line: bytes, position: Position) -> LogRecord:
        self._token = str(position)
        return LogRecord(
            source=self.name,
            data=line,
            at=None,
            position=self._token,
            trusted=self.trusted,
            envelope=self.envelope,
        )

    def _remember(self, position: Position | None) -> None:
        if position is not None:
            self._token = str(position)


def _valid(name: str, token: str | None) -> str | None:
    """`token` when it is a file position; a foreign one is dropped with a warning."""
    if token is None or Position.parse(token) is not None:
        return token
    log.warning("%s: ignoring resume position %r: not a file position", name, token)
    return None
