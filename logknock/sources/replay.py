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

With `workers` > 1, a large plain file (SPLIT_MIN or more) is cut into
blocks of BLOCK bytes, each moved on to a line start, that `workers` forked
children take in turn, each sending back its needle lines and line counts
through a pipe, one message per block; records still come out in file
order, numbered as in the file. Given a `digester` (`Pipeline.digester`), a
child also reads each line as far as the pipeline can without its state (the
fast lane's fields, or the matcher's rejection) and sends that digest instead
of the line: the parsing then runs on every CPU, and the caller's one
pipeline takes the `Digested` runs on in order with its one tracker. Only a
process with one thread forks (see `_may_fork`).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import gzip
import marshal
import os
import signal
import struct
import sys
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import IO, Any, NoReturn, Protocol

from ..errors import SourceError
from ..models import Digested, LogRecord

CHUNK = 1 << 20
SPLIT_MIN = 8 << 20  # bytes: smaller files are read faster than children are started
BLOCK = 1 << 20  # bytes of file a child takes at a time
PIPE = 1 << 20  # the pipe a child asks for: it may run a block or so ahead
CHILD_NICE = 10  # children yield the CPU to the reader: it alone takes every record on

Skipped = Callable[[str, int], None]
Prepare = Callable[[bytes], "tuple[Any, ...] | None"]  # in a child: a line's digest, or None
Digester = Callable[[str, bool], Prepare]  # (source, trusted) -> the digest of its lines
Numbered = Generator[tuple[int, bytes], None, int]  # (line number, line); returns the last number
# Numbered lines, or lists of the digests of consecutive lines; returns the last number.
Found = Generator["tuple[int, bytes] | list[tuple[Any, ...]]", None, int]
_new = tuple.__new__
_LENGTH = struct.Struct("=Q")  # before each message a child sends


class Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def read_files(
    paths: Iterable[str],
    trusted: bool = True,
    *,
    needle: bytes | None = None,
    skipped: Skipped | None = None,
    workers: int = 1,
    digester: Digester | None = None,
) -> Iterator[LogRecord | Digested]:
    """Records of every line, or with `needle` only of lines that hold it; where
    children scan (see the module doc), the digests that `digester(source, trusted)`
    makes of lines come out as `Digested`."""
    for path in paths:
        source = f"file:{path}"
        if needle is None:
            yield from (
                LogRecord(source, line, None, str(n), trusted) for n, line in _every_line(path)
            )
            continue
        prepare = digester(source, trusted) if digester else _undigested
        for item in _found(path, needle, _counter(source, skipped), workers, prepare):
            if isinstance(item, list):
                yield _new(Digested, (source, trusted, item))
            else:
                yield LogRecord(source, item[1], None, str(item[0]), trusted)


def _undigested(_line: bytes) -> None:
    return None


def _every_line(path: str) -> Iterator[tuple[int, bytes]]:
    with _open(path) as stream:
        yield from enumerate(_lines(stream), start=1)


def _found(
    path: str, needle: bytes, skip: Callable[[int], None], workers: int, prepare: Prepare
) -> Found:
    size = _split_size(path) if workers > 1 and _may_fork() else None
    if size is None:
        with _open(path) as stream:
            return (yield from _needle_lines(stream, needle, skip))
    return (yield from _split(path, size, workers, needle=needle, skip=skip, prepare=prepare))


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


def _split_size(path: str) -> int | None:
    """The size of a plain file large enough to split; None for anything else
    (a pipe, gzip, a small file, an error the plain way will report)."""
    if path == "-" or path.endswith(".gz"):
        return None
    try:
        size = os.stat(path).st_size
    except OSError:
        return None
    return size if size >= SPLIT_MIN else None


def _line_start(stream: IO[bytes], offset: int) -> int:
    """The start of the first line that begins at or after `offset` (or the end)."""
    if offset <= 0:
        return 0
    stream.seek(offset - 1)
    while block := stream.read(1 << 16):
        newline = block.find(b"\n")
        if newline >= 0:
            return stream.tell() - len(block) + newline + 1
    return stream.tell()


def _split(
    path: str,
    size: int,
    workers: int,
    *,
    needle: bytes,
    skip: Callable[[int], None],
    prepare: Prepare,
) -> Found:
    """The blocks dealt round to `workers` children; their findings in file order."""
    blocks = -(-size // BLOCK)
    children: list[_Child] = []
    number = 0
    try:
        for k in range(min(workers, blocks)):
            children.append(_Child.start(path, range(k, blocks, workers), blocks, needle, prepare))
        for block in range(blocks):
            found, lines, skipped = children[block % len(children)].block(path)
            for item in found:
                yield item if type(item) is list else (number + item[0], item[1])
            number += lines
            skip(skipped)
        for child in children:
            child.finish(path)
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
    """A forked process scanning every block in `mine`.

    It writes `("block", found, lines, skipped)` per block, `found` holding
    (line number within the block, line) pairs and lists of the digests of
    consecutive lines (taken on in one call each), then `("end",)`, or
    `("error", message)` instead. The pipe holds it back when it runs ahead
    of the reader: memory stays bounded however many lines hold the needle (a
    flood log is nothing but knock lines).
    """

    def __init__(self, pid: int, fd: int) -> None:
        self.pid, self.reaped = pid, False
        self.pipe = open(fd, "rb")  # noqa: SIM115 -- closed by stop()

    @classmethod
    def start(cls, path: str, mine: range, blocks: int, needle: bytes, prepare: Prepare) -> _Child:
        read_end, write_end = os.pipe()
        with contextlib.suppress(OSError):  # a larger pipe lets the child run further ahead
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE)
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(read_end)
            os.close(write_end)
            raise SourceError(
                f"cannot read {path}: cannot start a process: {exc.strerror}"
            ) from exc
        if pid == 0:
            os.close(read_end)
            os.nice(CHILD_NICE)
            _serve(write_end, path, mine, blocks, needle=needle, prepare=prepare)
        os.close(write_end)
        return cls(pid, read_end)

    def block(self, path: str) -> tuple[list[Any], int, int]:
        """The next block's (found, lines, skipped)."""
        message = self._next(path)
        if message[0] != "block":
            self._failed(path, message)
        return message[1], message[2], message[3]

    def finish(self, path: str) -> None:
        """Read the end mark and reap the child; SourceError if it failed."""
        message = self._next(path)
        _, status = os.waitpid(self.pid, 0)
        self.reaped = True
        if message[0] != "end" or os.waitstatus_to_exitcode(status) != 0:
            self._failed(path, message)

    def stop(self) -> None:
        """Kill and reap the child unless it was reaped; close the pipe."""
        if not self.reaped:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.reaped = True
        self.pipe.close()

    def _next(self, path: str) -> Any:
        """The next message; SourceError when the child died before its end.

        Each comes whole, after its length: `marshal.load` on a stream would
        read it in many small pieces."""
        head = self.pipe.read(_LENGTH.size)
        body = self.pipe.read(_LENGTH.unpack(head)[0]) if len(head) == _LENGTH.size else b""
        try:
            # From our own child through our own pipe: marshal is safe and the fastest.
            return marshal.loads(body)  # noqa: S302
        except (EOFError, ValueError, TypeError) as exc:
            raise SourceError(f"cannot read {path}: a scanning process failed") from exc

    @staticmethod
    def _failed(path: str, message: Any) -> NoReturn:
        if message[0] == "error":
            raise SourceError(f"cannot read {path}: {message[1]}")
        raise SourceError(f"cannot read {path}: a scanning process failed")


def _serve(
    fd: int, path: str, mine: range, blocks: int, *, needle: bytes, prepare: Prepare
) -> NoReturn:
    """In the child: scan the blocks, write the findings, exit without cleanups.

    The child makes no reference cycles and soon exits: it runs without the
    cycle collector, which would otherwise walk its young objects again and again."""
    code = 1
    gc.disable()
    try:
        with open(fd, "wb") as pipe:
            try:
                with open(path, "rb") as stream:
                    for block in mine:
                        found = _scan_block(stream, block, blocks, needle, prepare)
                        _write(pipe, ("block", *found))
                end_mark: tuple[Any, ...] = ("end",)
            except OSError as exc:
                end_mark = ("error", exc.strerror or str(exc))
            except Exception as exc:  # noqa: BLE001 - the parent raises it, with what it was
                end_mark = ("error", f"a scanning process failed: {exc!r}")
            _write(pipe, end_mark)
        code = 0
    finally:
        os._exit(code)


def _write(pipe: IO[bytes], message: tuple[Any, ...]) -> None:
    data = marshal.dumps(message)
    pipe.write(_LENGTH.pack(len(data)))
    pipe.write(data)


def _scan_block(
    stream: IO[bytes], block: int, blocks: int, needle: bytes, prepare: Prepare
) -> tuple[list[Any], int, int]:
    """(found, lines, skipped) of one block: from the first line that starts in it
    to the first that starts in the next (the last block reads to the file's end)."""
    begin = _line_start(stream, block * BLOCK)
    end = None if block == blocks - 1 else _line_start(stream, (block + 1) * BLOCK)
    skipped: list[int] = []
    numbered = _needle_lines(_Part(stream, begin, end), needle, skipped.append)
    found: list[Any] = []
    run: list[tuple[Any, ...]] | None = None
    while True:
        try:
            n, line = next(numbered)
        except StopIteration as done:
            return found, int(done.value), sum(skipped)
        digest = prepare(line)
        if digest is None:
            found.append((n, line))
            run = None
        elif run is None:
            run = [digest]
            found.append(run)
        else:
            run.append(digest)
