"""The replay source: with the prefilter's needle it yields exactly the lines that
hold it, numbered as in the file, and counts every other line."""

from __future__ import annotations

import errno
import gzip
import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logknock.errors import SourceError
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
    st.integers(min_value=2, max_value=4),
)
def test_a_file_scanned_in_parts_by_children_reads_as_one(
    tmp_path_factory: pytest.TempPathFactory,
    body: list[bytes],
    final_newline: bool,
    chunk: int,
    workers: int,
) -> None:
    path = tmp_path_factory.mktemp("replay") / "log"
    path.write_bytes(b"\n".join(body) + (b"\n" if final_newline and body else b""))
    split_min, replay.SPLIT_MIN = replay.SPLIT_MIN, 0  # split even the smallest file
    may_fork, replay._may_fork = replay._may_fork, lambda: True  # other tests' threads
    original, replay.CHUNK = replay.CHUNK, chunk
    batch, replay.BATCH = replay.BATCH, chunk  # children send many small batches
    try:
        assert read(path, NEEDLE, workers) == read(path, NEEDLE)
    finally:
        replay.CHUNK, replay.SPLIT_MIN, replay.BATCH = original, split_min, batch
        replay._may_fork = may_fork


def test_parts_start_at_line_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"aaaa\nbb\n\ncccccc\nd")  # line starts: 0 5 8 9 16
    monkeypatch.setattr(replay, "SPLIT_MIN", 0)
    assert replay._cuts(str(path), 2) == [8]  # 17 bytes: the middle, 8, is a line start
    assert replay._cuts(str(path), 4) == [5, 8, 16]  # 4 and 12 move on to the next line
    assert replay._cuts(str(path) + ".gz", 2) == []


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

    monkeypatch.setattr(replay, "_send", failing)
    with pytest.raises(SourceError, match=r"cannot read .*: Input/output error$"):
        list(read_files([str(knock_log)], needle=NEEDLE, workers=2))
