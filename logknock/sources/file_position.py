"""Where a file source stands, as a resume token, and how to tell it is the same file.

A token is `"INODE:OFFSET:HEAD"`: the file's inode number, the offset just
after the last line handed out, and the sha256 of the file's first line (at
most `HEAD_MAX` bytes of it; empty while OFFSET is 0). An inode number alone
is not enough: a deleted file's number is soon given to a new file, and a
copytruncated file keeps its number while its content starts over. The
first line tells them apart (rsyslog lines start with their timestamp).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

HEAD_MAX = 1024  # bytes of the first line that identify a file
BACKTRACK = 1 << 17  # how far back from the end to look for a line start


@dataclass(frozen=True, slots=True)
class Position:
    inode: int
    offset: int
    head: str = ""

    def __str__(self) -> str:
        return f"{self.inode}:{self.offset}:{self.head}"

    @classmethod
    def parse(cls, token: str) -> Position | None:
        """The position a token names, or None when it is not one of ours."""
        parts = token.split(":")
        if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()):
            return None
        return cls(int(parts[0]), int(parts[1]), parts[2])


def head_of(fd: int) -> str:
    """The sha256 of the first line, or "" while the file has no whole first line."""
    data = os.pread(fd, HEAD_MAX, 0)
    newline = data.find(b"\n")
    if newline >= 0:
        data = data[: newline + 1]
    elif len(data) < HEAD_MAX:
        return ""
    return hashlib.sha256(data).hexdigest()


def same_file(position: Position, fd: int) -> bool:
    """True when `fd` is the file `position` was taken in, still holding what was read."""
    info = os.fstat(fd)
    if info.st_ino != position.inode or info.st_size < position.offset:
        return False
    return position.offset == 0 or head_of(fd) == position.head


def last_line_start(fd: int, size: int) -> int | None:
    """The offset where the file's last line starts (its end when the file ends
    with a newline); None when that line began more than BACKTRACK bytes ago."""
    if size == 0:
        return 0
    start = max(0, size - BACKTRACK)
    newline = os.pread(fd, size - start, start).rfind(b"\n")
    if newline >= 0:
        return start + newline + 1
    return 0 if start == 0 else None
