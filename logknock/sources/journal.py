"""The journal source: kernel messages as systemd-journald stored them.

Only entries with `_TRANSPORT=kernel` and `SYSLOG_FACILITY=0` are read; both
are matched by the reader and checked again on each entry. Verified with
journald 252 on kernel 6.18:

- Fields starting with `_` are set by journald alone. A client's `logger`,
  `systemd-cat` or `journal.send(SYSLOG_IDENTIFIER="kernel", SYSLOG_FACILITY="0")`
  arrives with `_TRANSPORT=syslog`, `stdout` or `journal`, never `kernel`.
- A line written to /dev/kmsg from userspace (`echo '<4>kernel: x' > /dev/kmsg`)
  *does* arrive with `_TRANSPORT=kernel`, but the kernel gives every userspace
  write a facility of 1 or more, and journald derives `SYSLOG_FACILITY` from
  that kmsg priority. For kernel-transport entries the field is therefore the
  kernel's word, and facility 0 is what only the kernel can write. (journald
  running without systemd logs its own messages through /dev/kmsg too: they
  are kernel-transport entries of facility 3 or 5.)
- `__REALTIME_TIMESTAMP` of a kernel entry is when journald read it, so the
  backlog journald imports at its start all carries its start time.

The position is the journal cursor of the last record yielded. At start the
reader seeks to that cursor and steps over the entry there; when the cursor is
no longer in the journal (vacuumed, or another machine's), it starts at `since`.
When journal files are added or removed (rotation, vacuuming) the reader is
reopened and goes on after the last entry it saw. `this_boot()` is not used:
it reads /proc/sys, which `ProcSubset=pid` hides.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any, TypeVar

from systemd import journal

from ..errors import SourceError
from ..models import LogRecord

log = logging.getLogger(__name__)

KERNEL_TRANSPORT = b"kernel"
KERNEL_FACILITY = b"0"
ENVELOPE = "journal-message"
T = TypeVar("T")


# journald wakes readers only when its coalescing timer fires (250 ms and
# more), while the entry is in the files within a few ms: look every 20 ms.
POLL = 0.02


def _as_stored(value: T) -> T:
    return value


# What we judge is compared as the bytes journald stored; time stays in integer microseconds.
CONVERTERS = {
    field: _as_stored
    for field in ("MESSAGE", "_TRANSPORT", "SYSLOG_FACILITY", "__REALTIME_TIMESTAMP")
}


def refusal(entry: dict[str, Any]) -> str | None:
    """Why an entry is not a kernel message we may act on, or None when it is."""
    if entry.get("_TRANSPORT") != KERNEL_TRANSPORT:
        return "transport"
    if entry.get("SYSLOG_FACILITY") != KERNEL_FACILITY:
        return "facility"
    if not isinstance(entry.get("MESSAGE"), bytes | str):
        return "message"
    return None


def to_record(entry: dict[str, Any]) -> LogRecord:
    message = entry["MESSAGE"]
    data = message.encode() if isinstance(message, str) else message
    at = entry["__REALTIME_TIMESTAMP"] / 1e6
    return LogRecord("journal", data, at, entry["__CURSOR"], True, ENVELOPE)


class JournalSource:
    """Kernel messages from the local journal, or from the journal directory `path`."""

    name = "journal"

    def __init__(self, resume: str | None, since: float, path: str | None = None) -> None:
        self.path = path
        self._since = since
        self._position = resume  # the last record yielded (or the one we resumed after)
        self._cursor = resume  # the last entry consumed, yielded or not: reopening goes on here
        self._last_usec: int | None = None  # realtime of that entry
        self.skipped: Counter[str] = Counter()  # entries refused, by reason
        self.reopened = 0  # times the journal files changed under us

    def position(self) -> str | None:
        return self._position

    def read(self, stop: threading.Event) -> Iterator[LogRecord]:
        try:
            yield from self._follow(stop)
        except OSError as exc:
            where = f" {self.path}" if self.path else ""
            raise SourceError(f"journal{where}: {exc.strerror or exc}") from exc

    def _follow(self, stop: threading.Event) -> Iterator[LogRecord]:
        reader = self._open()
        try:
            while not stop.is_set():
                yield from self._drain(reader, stop)
                if not stop.is_set() and reader.wait(POLL) == journal.INVALIDATE:
                    reader.close()  # files were added or removed: start again from our cursor
                    reader = self._open()
                    self.reopened += 1
        finally:
            reader.close()

    def _open(self) -> journal.Reader:
        reader = journal.Reader(path=self.path, converters=CONVERTERS)
        try:
            reader.fileno()  # watch the files now: else the first wait() reports INVALIDATE
            reader.add_match(_TRANSPORT="kernel", SYSLOG_FACILITY="0")
            if not (self._cursor and _seek_after(reader, self._cursor)):
                reader.seek_realtime(self._fallback())
        except BaseException:
            reader.close()
            raise
        return reader

    def _fallback(self) -> float | int:
        """Where to start without a cursor: after the last entry seen, else at `since`.

        An int is microseconds to python-systemd: exact, where a float could round
        back onto the last entry.
        """
        if self._last_usec is None:
            return self._since
        return self._last_usec + 1

    def _drain(self, reader: journal.Reader, stop: threading.Event) -> Iterator[LogRecord]:
        while not stop.is_set() and (entry := reader.get_next()):
            self._cursor = entry["__CURSOR"]
            self._last_usec = entry["__REALTIME_TIMESTAMP"]
            reason = refusal(entry)
            if reason is not None:
                self.skipped[reason] += 1
                continue
            self._position = self._cursor
            yield to_record(entry)


def _seek_after(reader: journal.Reader, cursor: str) -> bool:
    """Step onto the entry at `cursor`, so the next one comes next; False if it is gone."""
    try:
        reader.seek_cursor(cursor)
    except (OSError, ValueError) as exc:
        log.warning("journal: unusable cursor %r (%s); starting by time", cursor, exc)
        return False
    if reader.get_next() and reader.test_cursor(cursor):
        return True
    log.warning("journal: cursor no longer in the journal; starting by time")
    return False
