"""The replay source: records from recorded log files, in file order.

Used by `logknock replay`, the benchmarks and the tests. Plain and gzip files
(rotated logs) are read; `-` is standard input. Each line becomes a record
with no timestamp of its own: the envelope parser takes the time from the
line. Replayed files are marked trusted: the operator chose to replay them,
and `replay` reports how many lines could not prove a kernel origin.

Given the prefilter's `needle`, the file is read in large buffers and only
lines holding the needle become records; the others are counted with
`bytes.count` and reported through `skipped(source, n)`, without costing a
Python step each. The matcher drops such lines at its prefilter anyway.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import IO

from ..errors import SourceError
from ..models import LogRecord

CHUNK = 1 << 20

Skipped = Callable[[str, int], None]


def read_files(
    paths: Iterable[str],
    trusted: bool = True,
    *,
    needle: bytes | None = None,
    skipped: Skipped | None = None,
) -> Iterator[LogRecord]:
    """Records of every line, or with `needle` only of lines that hold it."""
    for path in paths:
        source = f"file:{path}"
        with _open(path) as stream:
            if needle is None:
                numbered: Iterator[tuple[int, bytes]] = enumerate(_lines(stream), start=1)
            else:
                numbered = _needle_lines(stream, needle, _counter(source, skipped))
            for number, line in numbered:
                yield LogRecord(source, line, None, str(number), trusted)


def _open(path: str) -> IO[bytes] | gzip.GzipFile:
    try:
        if path == "-":
            return sys.stdin.buffer
        if path.endswith(".gz"):
            return gzip.open(path, "rb")
        return open(path, "rb")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from exc


def _counter(source: str, skipped: Skipped | None) -> Callable[[int], None]:
    return (lambda n: skipped(source, n)) if skipped else (lambda n: None)


def _lines(stream: IO[bytes] | gzip.GzipFile) -> Iterator[bytes]:
    """Lines without their ending, read in large chunks (no per-line syscalls)."""
    rest = b""
    while chunk := stream.read(CHUNK):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from (line.removesuffix(b"\r") for line in lines)
    if rest:
        yield rest.removesuffix(b"\r")


def _needle_lines(
    stream: IO[bytes] | gzip.GzipFile, needle: bytes, skip: Callable[[int], None]
) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of the lines holding `needle`; `skip(n)` for the others.

    Each chunk is searched where it lies: only the line cut by the chunk's start
    is copied, joined to the rest of it from the chunk before.
    """
    rest, number = b"", 0
    while chunk := stream.read(CHUNK):
        first = chunk.find(b"\n")
        if first < 0:
            rest += chunk
            continue
        head = rest + chunk[: first + 1]
        number = yield from _scan(head, 0, len(head), needle, number=number, skip=skip)
        last = chunk.rfind(b"\n") + 1
        number = yield from _scan(chunk, first + 1, last, needle, number=number, skip=skip)
        rest = chunk[last:]
    if rest:
        yield from _scan(rest + b"\n", 0, len(rest) + 1, needle, number=number, skip=skip)


def _scan(
    buffer: bytes, begin: int, end: int, needle: bytes, *, number: int, skip: Callable[[int], None]
) -> Generator[tuple[int, bytes], None, int]:
    """The lines holding `needle` in `buffer[begin:end]`, whole lines that follow line
    `number`; returns the number of the last line there."""
    counted, skipped = begin, 0
    at = buffer.find(needle, begin, end)
    while at >= 0:
        newline = buffer.rfind(b"\n", begin, at)
        start = newline + 1 if newline >= 0 else begin
        stop = buffer.find(b"\n", at, end)
        before = buffer.count(b"\n", counted, start)
        skipped += before
        number += before + 1
        yield number, buffer[start:stop].removesuffix(b"\r")
        counted = stop + 1
        at = buffer.find(needle, counted, end)
    tail = buffer.count(b"\n", counted, end)
    skip(skipped + tail)
    return number + tail
