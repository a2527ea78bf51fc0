"""The kmsg source: facility 0 only, resume by seq, lost records counted, prompt stop."""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable

import pytest
from journald import KernelLines, SourceThread, kernel_lines_fixture, needs_live

from logknock.errors import SourceError
from logknock.lab import KernelLog
from logknock.models import LogRecord
from logknock.sources.kmsg import (
    KMSG,
    KmsgRecord,
    KmsgSource,
    Ring,
    parse,
    usable_resume,
    wall_clock,
)

__all__ = ["kernel_lines_fixture"]  # the fixture `kernel_lines`

# Parsing one read() of /dev/kmsg: the record, or None.
PARSED = [
    (b"4,1227,918002230,-;lk: IN=v\n", (4, 1227, 918002230, b"4,1227,918002230,-;lk: IN=v")),
    (b"6,1,2,c,caller=T1;hi\n SUBSYSTEM=net\n DEVICE=n2\n", (6, 1, 2, b"6,1,2,c,caller=T1;hi")),
    (b"12,5,7,-;semi;colons;kept", (12, 5, 7, b"12,5,7,-;semi;colons;kept")),
    (b"4,1,2,-;", (4, 1, 2, b"4,1,2,-;")),
    (b"4,1,2;no flags field\n", None),
    (b"x,1,2,-;bad pri\n", None),
    (b"4,-1,2,-;negative seq\n", None),
    (b"4,1,2,- no semicolon\n", None),
    (b"", None),
]


@pytest.mark.parametrize(("data", "expected"), PARSED)
def test_parse(data: bytes, expected: tuple[int, int, int, bytes] | None) -> None:
    record = parse(data)
    got = None if record is None else (record.pri, record.seq, record.usec, record.line)
    assert got == expected


def _parsed(data: bytes) -> KmsgRecord:
    record = parse(data)
    assert record is not None, data
    return record


@pytest.mark.parametrize(("pri", "facility"), [(0, 0), (7, 0), (8, 1), (12, 1), (191, 23)])
def test_facility_is_the_priority_without_its_level(pri: int, facility: int) -> None:
    assert _parsed(f"{pri},1,1,-;x".encode()).facility == facility


# Seq numbers as read, "epipe" for a read that failed with EPIPE -> records counted lost.
RING = [
    ([1, 2, 3], 0),
    (["epipe", 7], 0),  # an overrun before the first record: nothing to count from
    ([5, "epipe", 9], 3),
    ([5, "epipe", 9, 10, "epipe", 20], 12),
    ([5, 8], 2),  # a gap without EPIPE is counted too
    ([5, "epipe", 6], 0),
]


@pytest.mark.parametrize(("events", "lost"), RING)
def test_ring_counts_the_records_an_overrun_skipped(events: list[int | str], lost: int) -> None:
    ring = Ring()
    for event in events:
        if event == "epipe":
            ring.overrun()
        else:
            assert isinstance(event, int)
            ring.advance(event)
    assert ring.lost == lost


def test_ring_warns_once_per_overrun(caplog: pytest.LogCaptureFixture) -> None:
    ring = Ring()
    for seq in (1, 2):
        ring.advance(seq)
    ring.overrun()
    for seq in (10, 11, 12):
        ring.advance(seq)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["kmsg: 7 kernel log records overwritten before we read them"]


# (saved seq, oldest in buffer, newest in buffer) -> (resume after, missed)
RESUME = [
    ((10, 1, 50), (10, 0)),
    ((50, 1, 50), (50, 0)),  # nothing new yet
    ((0, 1, 50), (0, 0)),
    ((10, 20, 50), (10, 9)),  # records 11..19 overwritten while nobody read
    ((51, 1, 50), (None, 0)),  # past the newest: a reboot restarted the numbers
]


@pytest.mark.parametrize(("given", "expected"), RESUME)
def test_usable_resume(given: tuple[int, int, int], expected: tuple[int | None, int]) -> None:
    assert usable_resume(*given) == expected


def test_wall_clock_maps_boot_time_to_epoch() -> None:
    now_usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)
    assert wall_clock(now_usec) == pytest.approx(time.time(), abs=0.01)


def test_a_missing_device_is_a_source_error() -> None:
    source = KmsgSource(None, 0.0, path="/nonexistent/kmsg")
    with pytest.raises(SourceError, match="cannot open /nonexistent/kmsg"):
        next(source.read(threading.Event()))


def test_a_resume_that_is_not_a_seq_is_no_resume() -> None:
    assert KmsgSource("s=abc;i=1", 0.0).position() is None
    assert KmsgSource("42", 0.0).position() == "42"


# Live: the real /dev/kmsg, genuine lines from the kernel, forged ones from userspace.


def _seq(record: LogRecord) -> int:
    assert record.position is not None
    return int(record.position)


def _with(marker: bytes) -> Callable[[LogRecord], bool]:
    return lambda record: marker in record.data


def _kernel_records_after(seq: int, through: int) -> list[int]:
    """The seqs of the facility-0 records in (seq, through], read from a fresh open."""
    fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK)
    seqs = []
    try:
        while True:
            try:
                record = parse(os.read(fd, 8192))
            except BlockingIOError:
                return seqs
            if record and record.facility == 0 and seq < record.seq <= through:
                seqs.append(record.seq)
    finally:
        os.close(fd)


FORGED = [
    "<12>logknock: IN=eth0 SRC=198.18.0.9 {token}",
    "<4>logknock: IN=eth0 SRC=198.18.0.9 {token}",
    "<0>kernel: logknock: IN=eth0 SRC=198.18.0.9 {token}",
    "logknock: IN=eth0 SRC=198.18.0.9 {token}",
]


@pytest.mark.root
@needs_live
@pytest.mark.parametrize("forged", FORGED)
def test_userspace_writes_are_refused_and_kernel_lines_yielded(
    kernel_lines: KernelLines, forged: str
) -> None:
    token = secrets.token_hex(8)
    source = KmsgSource(None, time.time() - 60)
    with SourceThread(source) as reader, KernelLog() as klog:
        with open(KMSG, "wb", buffering=0) as kmsg:
            kmsg.write(forged.format(token=token).encode() + b"\n")
        arrived = klog.collect(lambda data: token.encode() in data, 1, timeout=5)
        assert len(arrived) == 1, "the forged line never reached the kernel log"
        assert _parsed(arrived[0]).facility >= 1
        before = time.time()
        genuine = kernel_lines.emit()
        reader.until(_with(genuine))
        after = time.time()
    (record,) = reader.containing(genuine)
    assert _seq(record) > _parsed(arrived[0]).seq, "the source read past the forged line"
    assert reader.containing(token.encode()) == []
    assert source.skipped["facility"] >= 1
    assert record.source == "kmsg" and record.envelope == "kmsg" and record.trusted
    assert record.data.startswith(f"4,{record.position},".encode())
    assert b"\n" not in record.data
    assert record.at is not None and before - 1 < record.at < after + 1


@pytest.mark.root
@needs_live
def test_resume_after_a_saved_seq_neither_repeats_nor_loses(kernel_lines: KernelLines) -> None:
    first = kernel_lines.emit()
    with SourceThread(KmsgSource(None, time.time() - 60)) as reader:
        reader.until(_with(first))
    saved = reader.source.position()
    assert saved == reader.seen[-1].position  # `first`, or a kernel line logged after it
    second = kernel_lines.emit()
    with SourceThread(KmsgSource(saved, time.time() + 3600)) as resumed:
        records = resumed.until(_with(second))
    assert resumed.containing(first) == []
    assert len(resumed.containing(second)) == 1
    got = [_seq(r) for r in records]
    assert got == _kernel_records_after(int(saved or 0), through=got[-1])


@pytest.mark.root
@needs_live
def test_a_seq_past_the_newest_record_starts_by_time(kernel_lines: KernelLines) -> None:
    old = kernel_lines.emit()
    with SourceThread(KmsgSource(None, time.time() - 60)) as reader:
        (record,) = [r for r in reader.until(_with(old)) if old in r.data]
    assert record.at is not None
    new = kernel_lines.emit()
    source = KmsgSource(str(10**15), since=record.at + 0.001)  # from "before a reboot"
    with SourceThread(source) as resumed:
        resumed.until(_with(new))
    assert resumed.containing(old) == []
    assert source.position() == resumed.seen[-1].position != str(10**15)


@pytest.mark.root
@needs_live
def test_since_skips_the_older_backlog(kernel_lines: KernelLines) -> None:
    old = kernel_lines.emit()
    new = kernel_lines.emit()
    with SourceThread(KmsgSource(None, time.time() - 60)) as reader:
        (record,) = [r for r in reader.until(_with(new)) if new in r.data]
        assert reader.containing(old)
    assert record.at is not None
    with SourceThread(KmsgSource(None, since=record.at - 0.0005)) as later:
        later.until(_with(new))
    assert later.containing(old) == []


@pytest.mark.root
@needs_live
def test_a_set_stop_returns_without_records() -> None:
    stop = threading.Event()
    stop.set()
    assert list(KmsgSource(None, 0.0).read(stop)) == []


@pytest.mark.root
@needs_live
def test_stop_ends_a_source_waiting_for_records(kernel_lines: KernelLines) -> None:
    reader = SourceThread(KmsgSource(None, time.time()))
    with reader:
        reader.until(_with(kernel_lines.emit()))
    assert not reader.thread.is_alive()  # close() waited for it


@pytest.mark.root
@needs_live
def test_reading_the_same_source_again_goes_on_after_its_position(
    kernel_lines: KernelLines,
) -> None:
    source = KmsgSource(None, time.time() - 60)
    first = kernel_lines.emit()
    with SourceThread(source) as reader:
        reader.until(_with(first))
    second = kernel_lines.emit()
    with SourceThread(source) as again:
        again.until(_with(second))
    assert again.containing(first) == []
    assert _seq(again.seen[0]) > _seq(reader.seen[-1])
