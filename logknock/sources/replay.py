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

With `workers` > 1, a large plain file is cut at line boundaries into that
many parts and the parts after the first are scanned at the same time by
forked children, each sending back its needle lines and line count through a
pipe; records still come out in file order, numbered as in the file. Only the
scan runs in parallel: every record goes through the caller's one pipeline.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import marshal
import os
import signal
import sys
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import IO, Any, NoReturn, Protocol

from ..errors import SourceError
from ..models import LogRecord

CHUNK = 1 << 20
SPLIT_MIN = 32 << 20  # bytes: smaller files are scanned faster than a fork is made
BATCH = 1 << 20  # bytes of lines a child sends at once, and the pipe it asks for

Skipped = Callable[[str, int], None]
Numbered = Generator[tuple[int, bytes], None, int]  # (line number, line); returns the last number


class Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def read_files(
    paths: Iterable[str],
    trusted: bool = True,
    *,
    needle: bytes | None = None,
    skipped: Skipped | None = None,
    workers: int = 1,
) -> Iterator[LogRecord]:
    """Records of every line, or with `needle` only of lines that hold it."""
    for path in paths:
        source = f"file:{path}"
        numbered = (
            _every_line(path)
            if needle is None
            else _found(path, needle, _counter(source, skipped), workers)
        )
        yield from (LogRecord(source, line, None, str(n), trusted) for n, line in numbered)


def _every_line(path: str) -> Iterator[tuple[int, bytes]]:
    with _open(path) as stream:
        yield from enumerate(_lines(stream), start=1)


def _found(path: str, needle: bytes, skip: Callable[[int], None], workers: int) -> Numbered:
    cuts = _cuts(path, workers) if workers > 1 and _may_fork() else []
    if not cuts:
        with _open(path) as stream:
            return (yield from _needle_lines(stream, needle, skip))
    return (yield from _split(path, cuts, needle, skip))


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


def _lines(stream: Reader) -> Iterator[bytes]:
    """Lines without their ending, read in large chunks (no per-line syscalls)."""
    rest = b""
    while chunk := stream.read(CHUNK):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from (line.removesuffix(b"\r") for line in lines)
    if rest:
        yield rest.removesuffix(b"\r")


def _needle_lines(stream: Reader, needle: bytes, skip: Callable[[int], None]) -> Numbered:
    """(line number, line) of the lines holding `needle`; `skip(n)` for the others;
    returns the number of lines read.

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
        number = yield from _scan(rest + b"\n", 0, len(rest) + 1, needle, number=number, skip=skip)
    return number


def _scan(
    buffer: bytes, begin: int, end: int, needle: bytes, *, number: int, skip: Callable[[int], None]
) -> Numbered:
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


# -- one file scanned by several processes ------------------------------------------


def _may_fork() -> bool:
    """Only a process with one thread forks: a child of a threaded one could
    inherit a lock some other thread held (Python 3.12 warns about it)."""
    return threading.active_count() == 1


def _cuts(path: str, workers: int) -> list[int]:
    """Offsets, each at a line's start, that cut a large plain file into `workers`
    parts of about the same size; [] for anything else (a pipe, gzip, a small file)."""
    if path == "-" or path.endswith(".gz"):
        return []
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size < SPLIT_MIN:
                return []
            cuts = [_line_start(stream, size * i // workers) for i in range(1, workers)]
    except OSError:
        return []  # the plain way reports the error
    return sorted({cut for cut in cuts if 0 < cut < size})


def _line_start(stream: IO[bytes], offset: int) -> int:
    """The start of the first line that begins at or after `offset` (or the end)."""
    stream.seek(offset - 1)
    while block := stream.read(1 << 16):
        newline = block.find(b"\n")
        if newline >= 0:
            return stream.tell() - len(block) + newline + 1
    return stream.tell()


def _split(path: str, cuts: list[int], needle: bytes, skip: Callable[[int], None]) -> Numbered:
    """The first part here, the others in children started now; in file order."""
    bounds = list(zip([0, *cuts], [*cuts, None], strict=True))
    children = [_Child.start(path, begin, end, needle) for begin, end in bounds[1:]]
    try:
        with open(path, "rb") as stream:
            number = yield from _needle_lines(_Part(stream, 0, cuts[0]), needle, skip)
        for child in children:
            lines, skipped = yield from child.found(path, number)
            skip(skipped)
            number += lines
    finally:
        for child in children:
            child.stop()
    return number


class _Part:
    """A file read from `begin` up to `end` (None: its end)."""

    def __init__(self, stream: IO[bytes], begin: int, end: int | None) -> None:
        stream.seek(begin)
        self.stream, self.left = stream, None if end is None else end - begin

    def read(self, size: int = -1, /) -> bytes:
        if self.left is None:
            return self.stream.read(size)
        data = self.stream.read(min(size, self.left) if size >= 0 else self.left)
        self.left -= len(data)
        return data


class _Child:
    """A forked process scanning one part.

    It writes its needle lines as marshalled lists of about BATCH bytes, then
    `("end", lines, skipped)` or `("error", message)`. The pipe holds it back
    when it runs ahead of the reader: memory stays bounded however many lines
    hold the needle (a flood log is nothing but knock lines).
    """

    def __init__(self, pid: int, fd: int) -> None:
        self.pid, self.fd, self.reaped = pid, fd, False

    @classmethod
    def start(cls, path: str, begin: int, end: int | None, needle: bytes) -> _Child:
        read_end, write_end = os.pipe()
        with contextlib.suppress(OSError):  # a larger pipe lets the child run further ahead
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, BATCH)
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _serve(write_end, path, begin, end, needle)
        os.close(write_end)
        return cls(pid, read_end)

    def found(self, path: str, base: int) -> Generator[tuple[int, bytes], None, tuple[int, int]]:
        """The part's needle lines, numbered from line `base`; returns (lines, skipped)."""
        with open(self.fd, "rb", closefd=False) as pipe:
            while isinstance(item := _load(pipe, path), list):
                yield from ((base + n, line) for n, line in item)
        _, status = os.waitpid(self.pid, 0)
        self.reaped = True
        if item[0] == "error":
            raise SourceError(f"cannot read {path}: {item[1]}")
        if item[0] != "end" or os.waitstatus_to_exitcode(status) != 0:
            raise SourceError(f"cannot read {path}: a scanning process failed")
        return item[1], item[2]

    def stop(self) -> None:
        """Kill and reap the child unless it was reaped; close the pipe."""
        if not self.reaped:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.reaped = True
        os.close(self.fd)


def _load(pipe: IO[bytes], path: str) -> Any:
    """The next value from a child; SourceError when it died before its end."""
    try:
        # From our own child through our own pipe: marshal is safe and the fastest.
        return marshal.load(pipe)  # noqa: S302
    except (EOFError, ValueError, TypeError) as exc:
        raise SourceError(f"cannot read {path}: a scanning process failed") from exc


def _serve(fd: int, path: str, begin: int, end: int | None, needle: bytes) -> NoReturn:
    """In the child: scan the part, write the findings, exit without cleanups."""
    code = 1
    try:
        with open(fd, "wb") as pipe:
            skipped: list[int] = []
            try:
                with open(path, "rb") as stream:
                    found = _needle_lines(_Part(stream, begin, end), needle, skipped.append)
                    lines = _send(found, pipe)
                end_mark: tuple[Any, ...] = ("end", lines, sum(skipped))
            except OSError as exc:
                end_mark = ("error", exc.strerror or str(exc))
            marshal.dump(end_mark, pipe)
        code = 0
    finally:
        os._exit(code)


def _send(numbered: Numbered, pipe: IO[bytes]) -> int:
    """Write what a scan yields in lists of about BATCH bytes; return what it returns."""
    batch: list[tuple[int, bytes]] = []
    size = 0
    while True:
        try:
            item = next(numbered)
        except StopIteration as done:
            marshal.dump(batch, pipe)
            return int(done.value)
        batch.append(item)
        size += len(item[1])
        if size >= BATCH:
            marshal.dump(batch, pipe)
            batch, size = [], 0
