"""Cutting a growing file's bytes into whole lines.

A line is handed out only once its newline has been read, so a line the
writer has not finished is held back, never split and never yielded twice.
A line longer than the matcher's limit is kept only up to `CAP` bytes (one
more than the limit, so the matcher rejects it as too long) and the rest of it
is dropped as it is read: memory stays bounded whatever the file holds.
"""

from __future__ import annotations

from ..matcher import MAX_LINE

CAP = MAX_LINE + 1  # the bytes kept of an over-long line: enough to be rejected


class LineBuffer:
    """Whole lines out of consecutive chunks of one file, with their end offsets."""

    def __init__(self, offset: int, *, skip_first: bool = False) -> None:
        self.offset = offset  # the file offset just after the last whole line
        self._held = bytearray()  # the unfinished line, at most CAP bytes of it
        self._pending = 0  # bytes of the unfinished line read so far, dropped ones included
        self._skip = skip_first  # drop everything up to the first newline (started mid-line)

    def feed(self, chunk: bytes) -> list[tuple[bytes, int]]:
        """The lines this chunk completes, each with the offset just after its newline."""
        lines: list[tuple[bytes, int]] = []
        start = 0
        while (newline := chunk.find(b"\n", start)) >= 0:
            self._keep(chunk[start:newline])
            line = self._finish(self._pending + 1)
            if line is not None:
                lines.append((line, self.offset))
            start = newline + 1
        self._keep(chunk[start:])
        return lines

    def _keep(self, piece: bytes) -> None:
        room = CAP - len(self._held)
        if room > 0 and not self._skip:
            self._held += piece[:room]
        self._pending += len(piece)

    def _finish(self, length: int) -> bytes | None:
        line = bytes(self._held)
        whole = len(line) == self._pending
        skipped = self._skip
        self.offset += length
        self._held.clear()
        self._pending = 0
        self._skip = False
        if skipped:
            return None
        return line.removesuffix(b"\r") if whole else line
