"""The kmsg source: kernel messages read straight from /dev/kmsg.

Each read() returns one record, `pri,seq,usec,flags[,caller];message\\n`,
followed by optional ` KEY=value` lines, which are dropped. Only records of
facility 0 (pri < 8) are yielded: the kernel gives everything written to
/dev/kmsg from userspace a facility of 1 or more, whatever `<N>` it sent.

The position is the sequence number of the last record yielded. A fresh open
reads from the oldest record still in the ring buffer, so at start the source
reads that backlog first, then decides where to begin: after the saved seq;
or, when there is none or it is newer than anything in the buffer (the machine
rebooted and the numbering restarted), at records newer than `since`. A reboot
after which the kernel already logged more records than the saved seq goes
unnoticed: the new boot's records up to that seq are skipped.

When the ring buffer overwrites records before we read them, read() fails with
EPIPE and the next read returns the oldest record left; the gap in sequence
numbers is how many were lost. They are counted in `lost` and logged once per
overrun.

Record times count microseconds from boot on the kernel's local_clock(), which
like CLOCK_MONOTONIC stops during suspend (CLOCK_BOOTTIME does not), so a record
is dated `now - monotonic_now + usec`: right for records logged since the last
resume, and late by the time spent suspended for older ones. On kernel 6.18
here local_clock() ran about 5 ms behind CLOCK_MONOTONIC.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import SourceError
from ..models import LogRecord
from .base import WAIT

log = logging.getLogger(__name__)

KMSG = "/dev/kmsg"
RECORD_MAX = 8192  # the kernel refuses (EINVAL) a read buffer smaller than the record
ENVELOPE = "kmsg"


@dataclass(frozen=True, slots=True)
class KmsgRecord:
    pri: int
    seq: int
    usec: int
    line: bytes  # the record's first line, without its newline

    @property
    def facility(self) -> int:
        return self.pri >> 3


def parse(data: bytes) -> KmsgRecord | None:
    """One read() of /dev/kmsg as a record; None when its header is not `pri,seq,usec,...;`."""
    line = data.split(b"\n", 1)[0]
    header, semicolon, _ = line.partition(b";")
    fields = header.split(b",")
    if not semicolon or len(fields) < 4 or not all(f.isdigit() for f in fields[:3]):
        return None
    return KmsgRecord(int(fields[0]), int(fields[1]), int(fields[2]), line)


def wall_clock(usec: int) -> float:
    """The epoch time of a record stamped `usec` microseconds after boot."""
    return time.time() - time.clock_gettime(time.CLOCK_MONOTONIC) + usec / 1e6


class Ring:
    """Sequence numbers as they come, and how many records the ring buffer overwrote."""

    def __init__(self) -> None:
        self.last: int | None = None  # the newest seq read
        self.lost = 0
        self._overrun = False

    def overrun(self) -> None:
        """read() failed with EPIPE: the next record tells how many were lost."""
        self._overrun = True

    def advance(self, seq: int) -> int:
        """Take the next record's seq; return how many records were lost before it."""
        gap = 0 if self.last is None else max(0, seq - self.last - 1)
        if gap or self._overrun:
            self.lost += gap
            log.warning(
                "kmsg: %s kernel log records overwritten before we read them", gap or "some"
            )
        self._overrun = False
        self.last = seq
        return gap


class KmsgSource:
    """Kernel messages from /dev/kmsg (or another device that reads like it)."""

    name = "kmsg"

    def __init__(self, resume: str | None, since: float, path: str = KMSG) -> None:
        self.path = path
        self._since = since
        self._position = resume if resume and resume.isdigit() else None
        self.ring = Ring()
        self.skipped: Counter[str] = Counter()  # records refused, by reason

    @property
    def lost(self) -> int:
        return self.ring.lost

    def position(self) -> str | None:
        return self._position

    def read(self, stop: threading.Event) -> Iterator[LogRecord]:
        fd = self._open()
        try:
            yield from self._emit(self._start(list(self._records(fd, stop))))
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while not stop.is_set():
                if poller.poll(WAIT * 1000):
                    yield from self._emit(self._records(fd, stop))
        except OSError as exc:
            raise SourceError(f"{self.path}: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise SourceError(f"cannot open {self.path}: {exc.strerror or exc}") from exc

    def _records(self, fd: int, stop: threading.Event) -> Iterator[KmsgRecord]:
        """Read records until none is left; count the malformed and the overwritten."""
        while not stop.is_set():
            try:
                data = os.read(fd, RECORD_MAX)
            except BlockingIOError:
                return
            except BrokenPipeError:
                self.ring.overrun()
                continue
            record = parse(data)
            if record is None:
                self.skipped["malformed"] += 1
                continue
            self.ring.advance(record.seq)
            yield record

    def _start(self, backlog: list[KmsgRecord]) -> Iterator[KmsgRecord]:
        """The backlog from where this run begins: after the resume seq, else from `since`."""
        resume = self._usable_resume(backlog)
        if resume is not None:
            return (record for record in backlog if record.seq > resume)
        return (record for record in backlog if wall_clock(record.usec) >= self._since)

    def _usable_resume(self, backlog: list[KmsgRecord]) -> int | None:
        """Resume after the last record yielded (or the saved one), if this boot has it."""
        saved = int(self._position) if self._position is not None else None
        if saved is None or not backlog:
            return saved
        resume, missed = usable_resume(saved, backlog[0].seq, backlog[-1].seq)
        if resume is None:
            log.info("kmsg: saved seq %d is past the newest record: starting by time", saved)
            self._position = None
        elif missed:
            self.ring.lost += missed
            log.warning("kmsg: %d kernel log records overwritten while we were not reading", missed)
        return resume

    def _emit(self, records: Iterable[KmsgRecord]) -> Iterator[LogRecord]:
        for record in records:
            if record.facility != 0:
                self.skipped["facility"] += 1
                continue
            self._position = str(record.seq)
            yield LogRecord("kmsg", record.line, wall_clock(record.usec),
                            self._position, True, ENVELOPE)  # fmt: skip


def usable_resume(resume: int, oldest: int, newest: int) -> tuple[int | None, int]:
    """Resume after `resume` in a buffer holding seqs oldest..newest? And how many were missed.

    A saved seq past the newest record comes from before a reboot (the numbers
    start again at 0): it is no use. Records between it and the oldest one
    left were overwritten before anyone read them.
    """
    if resume > newest:
        return None, 0
    return resume, max(0, oldest - resume - 1)
