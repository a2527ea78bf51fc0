"""The replay source: records from recorded log files, in file order.

Used by `logknock replay`, the benchmarks and the tests. Plain and gzip files
(rotated logs) are read; `-` is standard input. Each line becomes a record
with no timestamp of its own: the envelope parser takes the time from the
line. Replayed files are marked trusted: the operator chose to replay them,
and `replay` reports how many lines could not prove a kernel origin.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterable, Iterator
from typing import IO

from ..errors import SourceError
from ..models import LogRecord

CHUNK = 1 << 20


def read_files(paths: Iterable[str], trusted: bool = True) -> Iterator[LogRecord]:
    for path in paths:
        with _open(path) as stream:
            for number, line in enumerate(_lines(stream), start=1):
                yield LogRecord(f"file:{path}", line, None, str(number), trusted)


def _open(path: str) -> IO[bytes] | gzip.GzipFile:
    try:
        if path == "-":
            return sys.stdin.buffer
        if path.endswith(".gz"):
            return gzip.open(path, "rb")
        return open(path, "rb")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from exc


def _lines(stream: IO[bytes] | gzip.GzipFile) -> Iterator[bytes]:
    """Lines without their ending, read in large chunks (no per-line syscalls)."""
    rest = b""
    while chunk := stream.read(CHUNK):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from (line.removesuffix(b"\r") for line in lines)
    if rest:
        yield rest.removesuffix(b"\r")
