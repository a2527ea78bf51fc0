"""The file source on real files: written, renamed, truncated, deleted and recreated.

Rotation scenarios are scripts in SCENARIOS (adding a case adds a line); they
drive the `Follower` directly, which never waits, so each `read` step knows
exactly what has been written before it. The `FileSource` tests run the real
reader thread with watchdog (or the `stat` fallback alone) and wait for records
with deadlines. The suite runs this file twice: with the venv's watchdog and
with Debian 12's watchdog 2.2.1 first on PYTHONPATH.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
import watchdog.version
from hypothesis import given
from hypothesis import strategies as st

from logknock.errors import SourceError
from logknock.models import LogRecord
from logknock.sources.base import Source
from logknock.sources.file import FileSource
from logknock.sources.file_follow import Follower
from logknock.sources.file_lines import CAP, LineBuffer
from logknock.sources.file_position import Position
from logknock.sources.file_watch import DirectoryWatch

DEADLINE = 10.0  # seconds before a wait counts as a failure; never a pass condition

# Each step: write LINES (whole lines, through the writer's open handle, like
# rsyslog), part TEXT (no newline), hup (the writer reopens the path, creating
# it), create (an empty file at the path), rename (logrotate: .1 -> .2, path ->
# .1), copytruncate, unlink, start (a follower without a resume position), stop
# / resume (a daemon restart with the saved position), read [LINES] (exactly
# these lines are readable now).
SCENARIOS = {
    "lines in order; a partial line waits for its newline": (
        "hup; start; write a1 a2; read a1 a2; part b1-; read; part more; read; "
        "write -end; read b1-more-end; read"
    ),
    "no resume: starts at the unfinished last line": (
        "hup; write old1 old2; part old3-; start; read; write new; read old3-new; read"
    ),
    "no resume: an empty file is read from its start": "hup; start; read; write a1; read a1",
    "rename rotation: old file first, new file once it has data": (
        "hup; start; write a1; read a1; rename; write a2; read a2; create; write a3; read a3; "
        "write a4; hup; write b1; read a4 b1; write b2; read b2"
    ),
    "rename rotation, the writer creates the new file": (
        "hup; start; write a1; read a1; rename; write a2; hup; write b1 b2; read a2 b1 b2"
    ),
    "copytruncate: read again from the start": (
        "hup; start; write a1 a2; read a1 a2; copytruncate; write b1; read b1; read"
    ),
    "copytruncate refilled past our offset before we looked": (
        "hup; start; write a1 a2; read a1 a2; copytruncate; write b1-longer b2-longer; "
        "read b1-longer b2-longer"
    ),
    "copytruncate refilled before the first line was read": (
        "hup; write old1 old2; start; copytruncate; write b1-longer b2-longer; "
        "read b1-longer b2-longer"
    ),
    "copytruncate to empty, then new lines": (
        "hup; start; write a1; read a1; copytruncate; read; write b1; read b1"
    ),
    "deleted and recreated": "hup; start; write a1; read a1; unlink; read; hup; write b1; read b1",
    "deleted, recreated empty: the new file waits for data": (
        "hup; start; write a1; read a1; unlink; create; read; hup; write b1; read b1"
    ),
    "missing at start: waited for, then read from its start": (
        "start; read; read; hup; write a1 a2; read a1 a2"
    ),
    "restart: lines written while down are read once": (
        "hup; start; write a1; read a1; stop; write a2 a3; resume; read a2 a3; write a4; read a4"
    ),
    "restart at the end, before any record": (
        "hup; write old; start; read; stop; write a1; resume; read a1"
    ),
    "restart with a partial line pending: read whole once": (
        "hup; start; write a1; part b-; read a1; stop; write rest; resume; read b-rest"
    ),
    "restart after the file was replaced: the new file from its start": (
        "hup; start; write a1; read a1; stop; unlink; hup; write b1 b2; resume; read b1 b2"
    ),
    "restart after rotation: the rest of PATH.1, then the new file": (
        "hup; start; write a1; read a1; stop; write a2; rename; write a3; hup; write b1; "
        "resume; read a2 a3 b1"
    ),
    "restart after rotation, new file still empty": (
        "hup; start; write a1; read a1; stop; write a2; rename; create; resume; read a2; "
        "hup; write b1; read b1"
    ),
    "restart after two rotations: only the current file": (
        "hup; start; write a1; read a1; stop; rename; hup; write b1; rename; hup; write c1; "
        "resume; read c1"
    ),
    "restart after copytruncate: from the start": (
        "hup; start; write a1 a2; read a1 a2; stop; copytruncate; write b1; resume; read b1"
    ),
    "restart after copytruncate refilled past the offset: from the start": (
        "hup; start; write a1 a2; read a1 a2; stop; copytruncate; write b1-longer b2-longer; "
        "resume; read b1-longer b2-longer"
    ),
}


class Script:
    """Runs one scenario against a real file in `tmp`."""

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "kernel.log"
        self.writer: BinaryIO | None = None
        self.follower: Follower | None = None
        self.saved: Position | None = None

    def run(self, script: str) -> None:
        for step in script.split(";"):
            verb, *args = step.split()
            getattr(self, verb.replace("-", "_"))(*args)

    def hup(self) -> None:
        self.close_writer()
        self.writer = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open like rsyslog

    def write(self, *lines: str) -> None:
        assert self.writer is not None
        self.writer.write("".join(f"{line}\n" for line in lines).encode())

    def part(self, text: str) -> None:
        assert self.writer is not None
        self.writer.write(text.encode())

    def create(self) -> None:
        self.path.touch()

    def rename(self) -> None:
        rotated = Path(f"{self.path}.1")
        if rotated.exists():
            rotated.rename(f"{self.path}.2")
        self.path.rename(rotated)

    def copytruncate(self) -> None:
        shutil.copyfile(self.path, f"{self.path}.1")
        os.truncate(self.path, 0)

    def unlink(self) -> None:
        self.path.unlink()

    def start(self) -> None:
        """A follower without a resume position, after its first look at the path."""
        self.follower = Follower(str(self.path), None)
        assert list(self.follower.lines()) == []

    def stop(self) -> None:
        assert self.follower is not None
        self.saved = self.follower.position()
        self.follower.close()
        self.follower = None

    def resume(self) -> None:
        self.follower = Follower(str(self.path), self.saved)

    def read(self, *expected: str) -> None:
        assert self.follower is not None
        got = [line.decode() for line, _ in self.follower.lines()]
        assert got == list(expected)

    def close_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def close(self) -> None:
        self.close_writer()
        if self.follower is not None:
            self.follower.close()


@pytest.mark.parametrize("script", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_scenario(tmp_path: Path, script: str) -> None:
    runner = Script(tmp_path)
    try:
        runner.run(script)
    finally:
        runner.close()


def test_a_huge_line_is_capped_and_the_next_line_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "kernel.log"
    path.touch()
    follower = Follower(str(path), None)
    try:
        assert list(follower.lines()) == []
        with open(path, "ab", buffering=0) as writer:
            for _ in range(4):
                writer.write(b"x" * 50_000)
                assert list(follower.lines()) == []
            writer.write(b"\nafter\n")
        (huge, _), (after, position) = follower.lines()
    finally:
        follower.close()
    assert huge == b"x" * CAP and len(huge) == 65537
    assert after == b"after" and position.offset == 200_007


def test_resuming_from_any_record_yields_exactly_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "kernel.log"
    lines = [f"line {i} {'-' * (i * 37 % 300)}".encode() for i in range(40)]
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    read = _read_all(Follower(str(path), Position(path.stat().st_ino, 0)))
    assert [line for line, _ in read] == lines
    for index, (_, position) in enumerate(read):
        again = Position.parse(str(position))
        assert [line for line, _ in _read_all(Follower(str(path), again))] == lines[index + 1 :]


@pytest.mark.parametrize(
    "position",
    [
        pytest.param(lambda ino: Position(ino, 10_000, ""), id="offset past the end"),
        pytest.param(lambda ino: Position(ino, 3, "0" * 64), id="another first line"),
        pytest.param(lambda ino: Position(ino + 1, 3, ""), id="another inode"),
    ],
)
def test_a_resume_position_of_another_file_reads_from_the_start(
    tmp_path: Path, position: Callable[[int], Position]
) -> None:
    path = tmp_path / "kernel.log"
    path.write_bytes(b"a1\na2\n")
    read = _read_all(Follower(str(path), position(path.stat().st_ino)))
    assert [line for line, _ in read] == [b"a1", b"a2"]


def _read_all(follower: Follower) -> list[tuple[bytes, Position]]:
    try:
        return list(follower.lines())
    finally:
        follower.close()


# --- LineBuffer and Position: pure -------------------------------------------------

LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"."))


@given(st.lists(LINE, max_size=12), st.lists(st.integers(0, 400), max_size=8))
def test_any_chunking_gives_the_same_lines_and_offsets(lines: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(line + b"\n" for line in lines) + b"unfinished"
    buffer = LineBuffer(100)
    got: list[tuple[bytes, int]] = []
    bounds = sorted({0, len(stream), *(min(cut, len(stream)) for cut in cuts)})
    for start, end in itertools.pairwise(bounds):
        got += buffer.feed(stream[start:end])
    ends = [100 + len(b"".join(line + b"\n" for line in lines[: i + 1])) for i in range(len(lines))]
    assert got == [(line.removesuffix(b"\r"), end) for line, end in zip(lines, ends, strict=True)]
    assert buffer.offset == (ends[-1] if ends else 100)


def test_line_buffer_caps_long_lines_and_keeps_a_capped_carriage_return() -> None:
    buffer = LineBuffer(0)
    long = b"y" * (CAP - 1) + b"\r" + b"z" * 10
    assert buffer.feed(long + b"\nok\r\n") == [
        (b"y" * (CAP - 1) + b"\r", CAP + 11),
        (b"ok", CAP + 15),
    ]


def test_line_buffer_skips_the_fragment_it_started_in() -> None:
    assert LineBuffer(50, skip_first=True).feed(b"tail of a line\nnext\n") == [(b"next", 70)]


@pytest.mark.parametrize("token", ["", "1:2", "a:2:x", "1:2:3:4", "-1:2:x", "cursor=s=abc"])
def test_tokens_that_are_not_file_positions_are_refused(token: str) -> None:
    assert Position.parse(token) is None


def test_a_position_survives_its_token() -> None:
    position = Position(1234, 5678, "ab" * 32)
    assert Position.parse(str(position)) == position


# --- FileSource: the reader thread, watchdog, the stat fallback ----------------------


class Reader:
    """Runs a source on its own thread, as the daemon does, and collects its records."""

    def __init__(self, source: FileSource) -> None:
        self.source = source
        self.stop = threading.Event()
        self.records: queue.Queue[LogRecord] = queue.Queue()
        self.error: SourceError | None = None
        self.thread = threading.Thread(target=self._run, name=f"reader {source.name}")
        self.thread.start()

    def _run(self) -> None:
        try:
            for record in self.source.read(self.stop):
                self.records.put(record)
        except SourceError as exc:
            self.error = exc

    def ready(self) -> None:
        """Wait until the source has opened its file (and so chosen where to start)."""
        _until(lambda: self.source.position() is not None, "the source opened its file")

    def take(self, count: int) -> list[bytes]:
        end = time.monotonic() + DEADLINE
        got = []
        for _ in range(count):
            try:
                got.append(self.records.get(timeout=max(0.0, end - time.monotonic())).data)
            except queue.Empty:
                pytest.fail(f"only {got} of {count} records before the deadline")
        return got

    def finish(self) -> list[bytes]:
        """Stop the source; what it yielded and nobody took yet."""
        self.stop.set()
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), "read() did not return after stop"
        return [self.records.get_nowait().data for _ in range(self.records.qsize())]


@pytest.fixture
def reader() -> Iterator[list[Reader]]:
    started: list[Reader] = []
    yield started
    for each in started:
        each.stop.set()
        each.thread.join(DEADLINE)


def _until(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.01)


def _start(
    readers: list[Reader],
    path: Path,
    *,
    resume: str | None = None,
    watch: bool = True,
    poll_interval: float = 1.0,
) -> Reader:
    source = FileSource(
        str(path), trusted=True, resume=resume, watch=watch, poll_interval=poll_interval
    )
    readers.append(Reader(source))
    return readers[-1]


def _append(path: Path, *lines: bytes) -> None:
    with open(path, "ab") as log:
        log.write(b"".join(line + b"\n" for line in lines))


@pytest.mark.parametrize("watch", [True, False], ids=["watchdog", "stat only"])
def test_source_follows_rotation_end_to_end(
    tmp_path: Path, reader: list[Reader], watch: bool
) -> None:
    path = tmp_path / "kernel.log"
    _append(path, b"old")
    tail = _start(reader, path, watch=watch, poll_interval=0.05)
    tail.ready()
    with open(path, "ab", buffering=0) as rsyslog:
        rsyslog.write(b"a1\n")
        assert tail.take(1) == [b"a1"]
        path.rename(f"{path}.1")
        rsyslog.write(b"a2\n")
        path.touch()
        rsyslog.write(b"a3\n")
        assert tail.take(2) == [b"a2", b"a3"]
    _append(path, b"b1", b"b2")
    assert tail.take(2) == [b"b1", b"b2"]
    assert tail.finish() == []


def test_file_source_is_a_source(tmp_path: Path) -> None:
    source: Source = FileSource(str(tmp_path / "kernel.log"), trusted=True)
    assert source.name == f"file:{tmp_path}/kernel.log" and source.position() is None


def test_source_records_carry_the_source_and_a_resume_position(
    tmp_path: Path, reader: list[Reader]
) -> None:
    path = tmp_path / "kernel.log"
    path.touch()
    tail = Reader(FileSource(str(path), trusted=False, envelope="syslog"))
    reader.append(tail)
    tail.ready()
    _append(path, b"a1")
    record = tail.records.get(timeout=DEADLINE)
    assert (record.source, record.at, record.trusted, record.envelope) == (
        f"file:{path}",
        None,
        False,
        "syslog",
    )
    assert record.position == tail.source.position() == f"{path.stat().st_ino}:3:" + _sha(b"a1\n")


def test_a_missing_directory_and_file_are_waited_for(tmp_path: Path, reader: list[Reader]) -> None:
    path = tmp_path / "logknock" / "kernel.log"
    gone = f"1:3:{_sha(b'a file from before the directory was removed')}"
    tail = _start(reader, path, resume=gone)  # a stale position: read the new file whole
    path.parent.mkdir()
    _append(path, b"a1", b"a2")
    assert tail.take(2) == [b"a1", b"a2"]
    _append(path, b"a3")
    assert tail.take(1) == [b"a3"]
    assert tail.finish() == [] and tail.error is None


def test_a_restart_reads_what_was_written_while_down_once(
    tmp_path: Path, reader: list[Reader]
) -> None:
    path = tmp_path / "kernel.log"
    _append(path, b"before the first start")
    first = _start(reader, path)
    first.ready()
    assert first.finish() == []
    _append(path, b"a1")  # while down, before any record: the start position resumes
    second = _start(reader, path, resume=first.source.position())
    assert second.take(1) == [b"a1"]
    assert second.finish() == []
    _append(path, b"a2", b"a3")
    third = _start(reader, path, resume=second.source.position())
    assert third.take(2) == [b"a2", b"a3"]
    _append(path, b"a4")
    assert third.take(1) == [b"a4"]
    assert third.finish() == []


def test_a_foreign_resume_token_starts_at_the_end(tmp_path: Path, reader: list[Reader]) -> None:
    path = tmp_path / "kernel.log"
    _append(path, b"old")
    tail = _start(reader, path, resume="s=0123;i=42")
    tail.ready()
    _append(path, b"new")
    assert tail.take(1) == [b"new"]


@pytest.mark.parametrize("exists", [True, False], ids=["file", "missing file"])
def test_stop_ends_the_generator(tmp_path: Path, reader: list[Reader], exists: bool) -> None:
    path = tmp_path / "kernel.log"
    if exists:
        path.touch()
    tail = _start(reader, path, poll_interval=60)  # the wait is capped at base.WAIT
    if exists:
        tail.ready()
    assert tail.finish() == []


def test_closing_the_generator_stops_the_watch(tmp_path: Path) -> None:
    path = tmp_path / "kernel.log"
    _append(path, b"a1")
    records = FileSource(str(path), trusted=True, resume=f"{path.stat().st_ino}:0:").read(
        threading.Event()
    )
    assert next(records).data == b"a1"
    records.close()  # the thread-leak guard fails the test if the observer survives


def test_a_directory_at_the_path_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "kernel.log"
    path.mkdir()
    with pytest.raises(SourceError, match="not a regular file"):
        next(FileSource(str(path), trusted=True, watch=False).read(threading.Event()))


def test_an_unreadable_file_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "kernel.log"
    path.write_bytes(b"a1\n")
    path.chmod(0o000)
    tmp_path.chmod(0o755)
    # Import as root, then drop to nobody: the checkout may be unreadable to nobody.
    program = (
        "import os, sys, threading\n"
        "from logknock.errors import SourceError\n"
        "from logknock.sources.file import FileSource\n"
        "if os.geteuid() == 0:\n"
        "    os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "try:\n"
        "    next(FileSource(sys.argv[1], trusted=True, watch=False).read(threading.Event()))\n"
        "except SourceError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", program, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == f"cannot read {path}: Permission denied", done.stderr


def test_the_directory_watch_wakes_on_writes_renames_and_new_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "kernel.log"
    wake = threading.Event()
    watch = DirectoryWatch(str(path), wake)
    try:
        watch.refresh()  # the directory does not exist yet: no error, no watch
        path.parent.mkdir()
        watch.refresh()
        for change in (path.touch, lambda: _append(path, b"x"), lambda: path.rename(f"{path}.1")):
            wake.clear()
            change()
            assert wake.wait(DEADLINE), f"no wake-up for {change}"
    finally:
        watch.close()


def test_watchdog_version_is_reported() -> None:
    print(f"watchdog {watchdog.version.VERSION_STRING}")
    assert watchdog.version.VERSION_MAJOR in (2, 3, 4, 5, 6, 7)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
