"""The replay source: with the prefilter's needle it yields exactly the lines that
hold it, numbered as in the file, and counts every other line."""

from __future__ import annotations

import errno
import gzip
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logknock.errors import SourceError
from logknock.models import Digested, LogRecord
from logknock.sources import replay
from logknock.sources.replay import read_files

NEEDLE = b"logknock:"

# Lines from pieces that put the needle at line starts, ends, twice, cut in half.
pieces = st.sampled_from([b"logknock: IN=", b"logknock:", b"log", b"knock:", b"x", b" ", b"\r"])
lines = st.lists(pieces, max_size=6).map(b"".join)


def read(path: Path, needle: bytes | None, workers: int = 1) -> tuple[list[tuple[str, bytes]], int]:
    skipped: list[int] = []
    records = read_files(
        [str(path)], needle=needle, skipped=lambda _s, n: skipped.append(n), workers=workers
    )
    got = [(r.position or "", r.data) for r in records]
    return got, sum(skipped)


@settings(max_examples=200)
@given(st.lists(lines, max_size=30), st.booleans(), st.integers(min_value=1, max_value=40))
def test_needle_lines_are_the_plain_lines_that_hold_it(
    tmp_path_factory: pytest.TempPathFactory, body: list[bytes], final_newline: bool, chunk: int
) -> None:
    path = tmp_path_factory.mktemp("replay") / "log"
    path.write_bytes(b"\n".join(body) + (b"\n" if final_newline and body else b""))
    original = replay.CHUNK
    replay.CHUNK = chunk  # small chunks: lines and needles cut at every place
    try:
        plain, _ = read(path, None)
        found, skipped = read(path, NEEDLE)
    finally:
        replay.CHUNK = original
    assert found == [(n, line) for n, line in plain if NEEDLE in line]
    assert skipped + len(found) == len(plain)


def test_lines_are_numbered_as_in_the_file_and_crlf_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"noise\r\nlogknock: a\r\n\nmore\nlogknock: b")
    assert read(path, NEEDLE) == ([("2", b"logknock: a"), ("5", b"logknock: b")], 3)


def test_gzip_files_are_read_too(tmp_path: Path) -> None:
    path = tmp_path / "log.gz"
    path.write_bytes(gzip.compress(b"a\nlogknock: x\nb\n"))
    assert read(path, NEEDLE) == ([("2", b"logknock: x")], 2)


def test_an_empty_file_has_no_lines(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"")
    assert read(path, NEEDLE) == ([], 0)


@settings(max_examples=150)
@given(
    st.lists(lines, max_size=40),
    st.booleans(),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=1, max_value=30),
    st.integers(min_value=2, max_value=4),
)
def test_a_file_scanned_in_blocks_by_children_reads_as_one(
    tmp_path_factory: pytest.TempPathFactory,
    body: list[bytes],
    final_newline: bool,
    chunk: int,
    block: int,
    workers: int,
) -> None:
    path = tmp_path_factory.mktemp("replay") / "log"
    path.write_bytes(b"\n".join(body) + (b"\n" if final_newline and body else b""))
    split_min, replay.SPLIT_MIN = replay.SPLIT_MIN, 0  # split even the smallest file
    may_fork, replay._may_fork = replay._may_fork, lambda: True  # other tests' threads
    original, replay.CHUNK = replay.CHUNK, chunk
    size, replay.BLOCK = replay.BLOCK, block  # many blocks, many cut lines
    try:
        assert read(path, NEEDLE, workers) == read(path, NEEDLE)
    finally:
        replay.CHUNK, replay.SPLIT_MIN, replay.BLOCK = original, split_min, size
        replay._may_fork = may_fork


def test_blocks_start_at_line_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"aaaa\nbb\n\ncccccc\nd")  # line starts: 0 5 8 9 16
    with path.open("rb") as stream:
        starts = [replay._line_start(stream, offset) for offset in range(18)]
    assert starts == [0, 5, 5, 5, 5, 5, 8, 8, 8, 9, 16, 16, 16, 16, 16, 16, 16, 17]
    monkeypatch.setattr(replay, "SPLIT_MIN", 18)
    assert replay._split_size(str(path)) is None  # too small to be worth children
    monkeypatch.setattr(replay, "SPLIT_MIN", 17)
    assert replay._split_size(str(path)) == 17
    assert replay._split_size(str(path) + ".gz") is None
    assert replay._split_size("-") is None


def test_children_send_the_digests_of_the_lines_they_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"logknock: 1\nnoise\nlogknock: two\nlogknock: 3\n" * 50)
    monkeypatch.setattr(replay, "SPLIT_MIN", 0)
    monkeypatch.setattr(replay, "BLOCK", 64)
    monkeypatch.setattr(replay, "_may_fork", lambda: True)

    def digester(source: str, trusted: bool) -> Callable[[bytes], tuple[object, ...] | None]:
        def digest(line: bytes) -> tuple[object, ...] | None:  # runs in the children
            tail = line.split()[-1]
            return (os.getpid(), int(tail), source, trusted) if tail.isdigit() else None

        return digest

    flat: list[object] = []  # each record, or each digest of a run of them
    for item in read_files([str(path)], needle=NEEDLE, workers=2, digester=digester):
        assert item.source == f"file:{path}" and item.trusted
        flat += item.digests if isinstance(item, Digested) else [item]
    assert [d.data if isinstance(d, LogRecord) else d[1] for d in flat] == [
        1,
        b"logknock: two",
        3,
    ] * 50
    assert [d.position for d in flat if isinstance(d, LogRecord)] == [
        str(4 * n + 3) for n in range(50)
    ]
    children = {d[0] for d in flat if not isinstance(d, LogRecord)}
    assert len(children) == 2 and os.getpid() not in children


@pytest.fixture
def knock_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """1,000 needle lines in a file that counts as large enough to split."""
    path = tmp_path / "log"
    path.write_bytes(b"logknock: x\n" * 1000)
    monkeypatch.setattr(replay, "SPLIT_MIN", 0)
    return path


def test_stopping_early_leaves_no_child_behind(
    knock_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "_may_fork", lambda: True)
    started: list[replay._Child] = []
    start = replay._Child.start
    monkeypatch.setattr(replay._Child, "start", lambda *a: started.append(start(*a)) or started[-1])
    records = read_files([str(knock_log)], needle=NEEDLE, workers=2)
    assert next(records).data == b"logknock: x"
    assert len(started) == 1
    records.close()  # the consumer gives up: the child is killed and reaped
    with pytest.raises(ChildProcessError):
        os.waitpid(started[0].pid, os.WNOHANG)


def test_a_process_with_threads_scans_alone(
    knock_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[object] = []
    monkeypatch.setattr(replay._Child, "start", lambda *a: started.append(a))
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert len(list(read_files([str(knock_log)], needle=NEEDLE, workers=2))) == 1000
    finally:
        stop.set()
        thread.join()
    assert started == []


def test_a_child_that_cannot_read_its_part_says_why(
    knock_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "_may_fork", lambda: True)

    def failing(*_: object) -> int:  # runs in the child only
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(replay, "_scan_block", failing)
    with pytest.raises(SourceError, match=r"cannot read .*: Input/output error$"):
        list(read_files([str(knock_log)], needle=NEEDLE, workers=2))


def test_a_fork_that_fails_is_a_clear_error_and_leaves_no_child(
    knock_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "_may_fork", lambda: True)
    monkeypatch.setattr(replay, "BLOCK", 1024)  # 12 blocks: a child for each worker
    started: list[int] = []
    fork = os.fork

    def second_fork_fails() -> int:
        if started:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        pid = fork()
        if pid:
            started.append(pid)
        return pid

    monkeypatch.setattr(replay.os, "fork", second_fork_fails)
    with pytest.raises(SourceError, match=r"cannot start a process: Resource temporarily"):
        list(read_files([str(knock_log)], needle=NEEDLE, workers=2))
    with pytest.raises(ChildProcessError):  # the first child was killed and reaped
        os.waitpid(started[0], os.WNOHANG)


def test_a_child_whose_digest_fails_says_what_failed(
    knock_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "_may_fork", lambda: True)

    def digester(_source: str, _trusted: bool) -> Callable[[bytes], None]:
        def digest(line: bytes) -> None:  # runs in the child only
            raise ValueError(f"cannot digest {line!r}")

        return digest

    with pytest.raises(SourceError, match=r"a scanning process failed: ValueError\(.cannot digest"):
        list(read_files([str(knock_log)], needle=NEEDLE, workers=2, digester=digester))
