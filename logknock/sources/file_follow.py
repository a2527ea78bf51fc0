"""Following one path across rotations: which file to read, from where, and when to switch.

All of it runs on the reader's thread; nothing here waits. `Follower.lines()`
returns every whole line that can be read now, in file order:

- rename rotation (logrotate `create`): the old file stays open and is read
  to its end; the reader moves to the new file only once the new file has
  data (the writer has moved to it), so lines the writer still puts into the
  renamed file before it reopens are not lost. The old file's last lines come
  first.
- copytruncate: the file shrinks below what was read, or its first line
  changes: it is read again from its start.
- a deleted file is kept open until a new file of that name has data; a path
  that does not exist is waited for, and a file that appears later is read
  from its start (everything in it is new).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import SourceError
from .file_lines import LineBuffer
from .file_position import Position, head_of, last_line_start, same_file

CHUNK = 1 << 16
ROTATED = ".1"  # logrotate's name for the previous file (without dateext)


@dataclass(eq=False)
class _Open:
    """A file held open, and how far it has been read (the reader thread's own)."""

    path: str
    fd: int
    identity: tuple[int, int]  # (st_dev, st_ino)
    pos: int  # the next byte to read
    lines: LineBuffer
    head: str = ""  # sha256 of its first line, once that line is whole

    def position(self, offset: int | None = None) -> Position:
        """The position after the last whole line read, or at `offset`."""
        offset = self.lines.offset if offset is None else offset
        if not self.head and offset:
            self.head = head_of(self.fd)
        return Position(self.identity[1], offset, self.head)

    def rewind(self) -> None:
        self.pos = 0
        self.lines = LineBuffer(0)
        self.head = ""


class Follower:
    """The file at `path`, followed from a resume position (or its end) onwards."""

    def __init__(self, path: str, resume: Position | None) -> None:
        self.path = path
        self._resume = resume
        self._started = False  # the first look at the path is done
        self._file: _Open | None = None

    def position(self) -> Position | None:
        """Where reading would continue: after the last line returned."""
        return self._file.position() if self._file else None

    def lines(self) -> Iterator[tuple[bytes, Position]]:
        """Every whole line readable now, each with the position just after it."""
        if self._file is None:
            self._file = _open(self.path) if self._started else self._first()
            self._started = True
        if self._file is None:
            return
        if _truncated(self._file):
            self._file.rewind()
        yield from _drain(self._file)
        successor = self._successor(self._file)
        if successor is not None:
            yield from _drain(self._file)  # what the writer added before it moved
            os.close(self._file.fd)
            self._file = successor
            yield from _drain(successor)

    def close(self) -> None:
        if self._file is not None:
            os.close(self._file.fd)
            self._file = None

    def _first(self) -> _Open | None:
        """The file to start with: the resume position's file, or the path's end."""
        resume = self._resume
        current = _open(self.path)
        if resume is None or (current and same_file(resume, current.fd)):
            return _at(current, resume)
        rotated = _open(self.path + ROTATED)
        if rotated and same_file(resume, rotated.fd):
            _close(current)
            return _at(rotated, resume)  # rotated while we were down: finish it first
        _close(rotated)
        return _at(current, Position(0, 0))

    def _successor(self, file: _Open) -> _Open | None:
        """A different file now at the path, once the writer has put data in it."""
        info = _stat(self.path)
        if info is None or info.st_size == 0 or (info.st_dev, info.st_ino) == file.identity:
            return None
        successor = _open(self.path)
        if successor is not None and successor.identity == file.identity:
            _close(successor)  # raced with a rename back: nothing changed
            return None
        return successor


def _at(file: _Open | None, position: Position | None) -> _Open | None:
    """`file` set to read from `position` (None: from the start of its last line)."""
    if file is None:
        return None
    if position is None:
        size = os.fstat(file.fd).st_size
        start = last_line_start(file.fd, size)
        offset = size if start is None else start
        file.lines = LineBuffer(offset, skip_first=start is None)
        file.head = head_of(file.fd) if offset else ""  # so a copytruncate shows at once
    else:
        offset = position.offset
        file.lines = LineBuffer(offset)
        file.head = position.head
    file.pos = offset
    return file


def _drain(file: _Open) -> Iterator[tuple[bytes, Position]]:
    while chunk := _pread(file):
        file.pos += len(chunk)
        for line, end in file.lines.feed(chunk):
            yield line, file.position(end)


def _truncated(file: _Open) -> bool:
    """The file was cut below what was read, or starts over with other content."""
    if os.fstat(file.fd).st_size < file.pos:
        return True
    return bool(file.head) and head_of(file.fd) != file.head


def _open(path: str) -> _Open | None:
    """`path` opened for reading from its start, or None while it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise SourceError(f"cannot read {path}: not a regular file")
    return _Open(path, fd, (info.st_dev, info.st_ino), 0, LineBuffer(0))


def _pread(file: _Open) -> bytes:
    try:
        return os.pread(file.fd, CHUNK, file.pos)
    except OSError as exc:
        raise SourceError(f"cannot read {file.path}: {exc.strerror}") from exc


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise SourceError(f"cannot look at {path}: {exc.strerror}") from exc


def _close(file: _Open | None) -> None:
    if file is not None:
        os.close(file.fd)
