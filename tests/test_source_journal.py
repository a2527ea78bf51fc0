"""The journal source: kernel entries only, resume by cursor, rotation, prompt stop."""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from journald import (
    KernelLines,
    SourceThread,
    file_holds,
    journald_fixture,
    kernel_lines_fixture,
    needs_live,
    rotate_journal,
    wait_for_entries,
)

from logknock.errors import SourceError
from logknock.models import LogRecord
from logknock.sources.journal import JournalSource, refusal, to_record

__all__ = ["journald_fixture", "kernel_lines_fixture"]  # the fixtures `journald`, `kernel_lines`

DEV_LOG = "/run/systemd/journal/dev-log"
KNOCK = "logknock: IN=eth0 OUT= SRC=198.18.0.9 DST=198.18.0.1 PROTO=UDP SPT=1 DPT=7000 "


# Each entry as journald hands it over: the reason it is refused, or None.
ENTRIES: list[tuple[dict[str, Any], str | None]] = [
    ({"_TRANSPORT": b"kernel", "SYSLOG_FACILITY": b"0", "MESSAGE": b"x"}, None),
    ({"_TRANSPORT": b"kernel", "SYSLOG_FACILITY": b"0", "MESSAGE": "x"}, None),
    ({"_TRANSPORT": b"kernel", "SYSLOG_FACILITY": b"1", "MESSAGE": b"x"}, "facility"),
    ({"_TRANSPORT": b"kernel", "MESSAGE": b"x"}, "facility"),
    ({"_TRANSPORT": b"kernel", "SYSLOG_FACILITY": [b"0", b"0"], "MESSAGE": b"x"}, "facility"),
    ({"_TRANSPORT": b"syslog", "SYSLOG_FACILITY": b"0", "MESSAGE": b"x"}, "transport"),
    ({"_TRANSPORT": b"journal", "SYSLOG_FACILITY": b"0", "MESSAGE": b"x"}, "transport"),
    ({"SYSLOG_FACILITY": b"0", "MESSAGE": b"x"}, "transport"),
    ({"_TRANSPORT": b"kernel", "SYSLOG_FACILITY": b"0"}, "message"),
    ({"_TRANSPORT": b"kernel", "SYSLOG_FACILITY": b"0", "MESSAGE": [b"a", b"b"]}, "message"),
]


@pytest.mark.parametrize(("entry", "reason"), ENTRIES)
def test_refusal(entry: dict[str, Any], reason: str | None) -> None:
    assert refusal(entry) == reason


@pytest.mark.parametrize(
    ("message", "data"), [(b"caf\xc3\xa9 \xff", b"caf\xc3\xa9 \xff"), ("café", b"caf\xc3\xa9")]
)
def test_a_record_carries_the_message_as_bytes(message: bytes | str, data: bytes) -> None:
    entry = {"MESSAGE": message, "__REALTIME_TIMESTAMP": 1_500_000, "__CURSOR": "s=1"}
    assert to_record(entry) == LogRecord("journal", data, 1.5, "s=1", True, "journal-message")


def test_a_missing_journal_directory_is_a_source_error(tmp_path: Path) -> None:
    source = JournalSource(None, 0.0, path=str(tmp_path / "none"))
    with pytest.raises(SourceError, match="No such file"):
        next(source.read(threading.Event()))


def _with(marker: bytes) -> Callable[[LogRecord], bool]:
    return lambda record: marker in record.data


def _one(reader: SourceThread, marker: bytes) -> LogRecord:
    """The single record with `marker`, once the source yielded it."""
    reader.until(_with(marker))
    (record,) = reader.containing(marker)
    return record


# Live: a real journald, genuine kernel lines, and lines forged every way a client can.


def live(test: Callable[..., None]) -> Callable[..., None]:
    """The marks of a live test: root, the real kernel log, a running journald."""
    return pytest.mark.root(needs_live(pytest.mark.usefixtures("journald")(test)))


@live
def test_a_kernel_line_becomes_a_trusted_record(kernel_lines: KernelLines) -> None:
    since = time.time() - 1
    with SourceThread(JournalSource(None, since)) as reader:
        marker = kernel_lines.emit()
        record = _one(reader, marker)
    (entry,) = wait_for_entries(marker, since=since)
    assert record.source == "journal" and record.envelope == "journal-message" and record.trusted
    assert record.data == entry["MESSAGE"] and record.data.startswith(marker)
    assert record.at == entry["__REALTIME_TIMESTAMP"] / 1e6
    assert record.position == entry["__CURSOR"]
    assert reader.source.position() == reader.seen[-1].position  # the last record yielded


def _logger(text: bytes) -> None:
    subprocess.run(["logger", "-u", DEV_LOG, "-t", "kernel", "-p", "kern.warning", text.decode()],
                   check=True)  # fmt: skip


def _systemd_cat(text: bytes) -> None:
    subprocess.run(["systemd-cat", "-t", "kernel", "-p", "warning"], input=text, check=True)


def _journal_send(text: bytes) -> None:
    from systemd import journal

    journal.send(MESSAGE=text.decode(), SYSLOG_IDENTIFIER="kernel", SYSLOG_FACILITY="0",
                 PRIORITY="4", _TRANSPORT="kernel")  # fmt: skip


def _datagram(text: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"<4>kernel: " + text, DEV_LOG)


def _kmsg(header: bytes) -> Callable[[bytes], None]:
    def write(text: bytes) -> None:
        with open("/dev/kmsg", "wb", buffering=0) as kmsg:
            kmsg.write(header + text + b"\n")

    return write


# How a client forges a kernel line -> the _TRANSPORT and SYSLOG_FACILITY journald stores.
FORGERS = [
    pytest.param(_logger, b"syslog", b"1", id="logger -t kernel"),  # logger sends kern as user
    pytest.param(_systemd_cat, b"stdout", None, id="systemd-cat -t kernel"),
    pytest.param(_journal_send, b"journal", b"0", id="journal.send(SYSLOG_FACILITY=0)"),
    pytest.param(_datagram, b"syslog", None, id="<4> datagram to dev-log"),
    pytest.param(_kmsg(b"<4>kernel: "), b"kernel", b"1", id="<4>kernel: to /dev/kmsg"),
    pytest.param(_kmsg(b"<0>"), b"kernel", b"1", id="<0> to /dev/kmsg"),
]


@live
@pytest.mark.parametrize(("forge", "transport", "facility"), FORGERS)
def test_forged_kernel_lines_are_refused(
    kernel_lines: KernelLines,
    forge: Callable[[bytes], None],
    transport: bytes,
    facility: bytes | None,
) -> None:
    token = secrets.token_hex(8).encode()
    since = time.time() - 1
    forge(KNOCK.encode() + token)
    (entry,) = wait_for_entries(token, since=since)  # it did arrive, or the test proves nothing
    assert entry["_TRANSPORT"] == transport
    assert entry.get("SYSLOG_FACILITY") == facility
    assert b"IN=eth0 OUT= SRC=198.18.0.9" in entry["MESSAGE"]
    with SourceThread(JournalSource(None, since)) as reader:
        genuine = kernel_lines.emit()  # journald stores it after the forged entry
        reader.until(_with(genuine))
    assert reader.containing(token) == []


def _kernel_cursors(after: str, through: str) -> list[str]:
    """Cursors of the kernel entries after `after`, through `through`, read independently."""
    from systemd import journal

    with journal.Reader() as reader:
        reader.add_match(_TRANSPORT="kernel")
        reader.seek_cursor(after)
        reader.get_next()
        cursors = []
        while entry := reader.get_next():
            if entry.get("SYSLOG_FACILITY") == 0:
                cursors.append(entry["__CURSOR"])
            if entry["__CURSOR"] == through:
                return cursors
    raise AssertionError(f"{through} not found after {after}")


@live
def test_resume_after_a_cursor_neither_repeats_nor_loses(kernel_lines: KernelLines) -> None:
    with SourceThread(JournalSource(None, time.time() - 1)) as reader:
        first = _one(reader, kernel_lines.emit())
    saved = reader.source.position()
    assert saved == reader.seen[-1].position  # `first`, or a kernel line logged after it
    second_marker = kernel_lines.emit()
    with SourceThread(JournalSource(saved, time.time() + 3600)) as resumed:
        records = resumed.until(_with(second_marker))
    assert resumed.containing(first.data) == []
    assert len(resumed.containing(second_marker)) == 1
    got = [r.position for r in records]
    assert got == _kernel_cursors(saved or "", through=records[-1].position or "")


def _foreign(cursor: str) -> str:
    """A cursor of the same shape from a journal we never had: seqnum id and boot id replaced."""
    cursor = re.sub(r"s=[0-9a-f]+", "s=" + secrets.token_hex(16), cursor)
    return re.sub(r"b=[0-9a-f]+", "b=" + secrets.token_hex(16), cursor)


@live
@pytest.mark.parametrize("unknown", [_foreign, lambda cursor: "not-a-cursor"])
def test_an_unknown_cursor_starts_at_since(
    kernel_lines: KernelLines, unknown: Callable[[str], str]
) -> None:
    """Not "somewhere near the cursor": a foreign cursor keeps the time of `old`, and
    a reader left where seek_cursor() put it would step over `old`."""
    with SourceThread(JournalSource(None, time.time() - 1)) as reader:
        old = _one(reader, kernel_lines.emit())
    assert old.position is not None and old.at is not None
    new_marker = kernel_lines.emit()
    with SourceThread(JournalSource(unknown(old.position), old.at - 0.001)) as resumed:
        resumed.until(_with(new_marker))
    assert len(resumed.containing(old.data)) == 1
    assert len(resumed.containing(new_marker)) == 1
    assert resumed.seen[0].at is not None and resumed.seen[0].at >= old.at - 0.001


@live
def test_rotation_reopens_without_repeating_or_losing(kernel_lines: KernelLines) -> None:
    source = JournalSource(None, time.time() - 1)
    with SourceThread(source) as reader:
        first = kernel_lines.emit()
        reader.until(_with(first))
        rotate_journal()
        second = kernel_lines.emit()
        reader.until(_with(second))
    assert source.reopened >= 1, "the rotation never reached the reader"
    assert len(reader.containing(first)) == 1
    assert len(reader.containing(second)) == 1


def _archive_holding(marker: bytes) -> Path:
    """Rotate the journal; return the archived file that now holds the entry with `marker`."""
    wait_for_entries(marker, since=time.time() - 60)
    (archive,) = [path for path in rotate_journal() if file_holds(path, marker)]
    return archive


def _place(archive: Path, directory: Path) -> Path:
    """Copy a journal file into `directory` at once (rename), as journald would add it."""
    staged = directory.parent / f"staging-{archive.name}"
    shutil.copyfile(archive, staged)
    return staged.rename(directory / archive.name)


@live
def test_vacuumed_files_lose_the_cursor_but_no_new_entry(
    kernel_lines: KernelLines, tmp_path: Path
) -> None:
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    first = kernel_lines.emit()
    _place(_archive_holding(first), journal_dir)
    source = JournalSource(None, time.time() - 60, path=str(journal_dir))
    with SourceThread(source) as reader:
        reader.until(_with(first))
        second = kernel_lines.emit()
        holding_second = _place(_archive_holding(second), journal_dir)
        reader.until(_with(second))  # a new file appeared: reopened, went on after `first`
        holding_second.unlink()  # vacuumed: the cursor of `second` is gone
        third = kernel_lines.emit()
        _place(_archive_holding(third), journal_dir)
        reader.until(_with(third))
    assert source.reopened >= 2
    for marker in (first, second, third):
        assert len(reader.containing(marker)) == 1, marker


@live
def test_a_set_stop_returns_without_records() -> None:
    stop = threading.Event()
    stop.set()
    assert list(JournalSource(None, 0.0).read(stop)) == []


@live
def test_stop_ends_a_source_waiting_for_entries(kernel_lines: KernelLines) -> None:
    reader = SourceThread(JournalSource(None, time.time() - 1))
    with reader:
        reader.until(_with(kernel_lines.emit()))
    assert not reader.thread.is_alive()  # close() waited for it


@live
def test_reading_the_same_source_again_goes_on_after_its_position(
    kernel_lines: KernelLines,
) -> None:
    source = JournalSource(None, time.time() - 1)
    with SourceThread(source) as reader:
        first = _one(reader, kernel_lines.emit())
    second = kernel_lines.emit()
    with SourceThread(source) as again:
        again.until(_with(second))
    assert again.containing(first.data) == []
    assert again.seen[0].position != reader.seen[-1].position
    assert (again.seen[0].at or 0) >= (reader.seen[-1].at or 0)
