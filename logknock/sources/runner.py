"""Runs one source on its own thread, retrying it with backoff when it fails.

A source that fails is reported and retried; it never stops the others. The
runner only puts records (and failure reports) on the daemon's queue: all
decisions are made on the main loop.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import SourceError
from ..models import LogRecord
from .base import Source

log = logging.getLogger("logknock.sources")

BACKOFF_START = 1.0
BACKOFF_MAX = 60.0


@dataclass(frozen=True, slots=True)
class SourceFailed:
    """Why a source last failed; the daemon shows it in status until it reads again."""

    source: str
    error: str
    retry_in: float


class SourceRunner:
    def __init__(
        self,
        make: Callable[[str | None], Source],
        name: str,
        out: queue.Queue[object],
        stop: threading.Event,
    ) -> None:
        self.make, self.name, self.out, self.stop = make, name, out, stop
        self.source: Source | None = None
        self.resume: str | None = None  # where a rebuilt source starts
        self.failure: SourceFailed | None = None
        self.thread = threading.Thread(target=self._run, name=f"logknock-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def position(self) -> str | None:
        current = self.source.position() if self.source else None
        return current if current is not None else self.resume

    def _run(self) -> None:
        delay = BACKOFF_START
        while not self.stop.is_set():
            try:
                self._read()
                delay = BACKOFF_START
            except (SourceError, OSError) as exc:
                log.warning("source %s failed: %s; retrying in %.0fs", self.name, exc, delay)
                self.resume, self.source = self.position(), None
                self.failure = SourceFailed(self.name, str(exc), delay)
                self.stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)

    def _read(self) -> None:
        if self.source is None:
            self.source = self.make(self.resume)
        for record in self.source.read(self.stop):
            self.failure = None
            self._put(record)

    def _put(self, record: LogRecord) -> None:
        while not self.stop.is_set():
            try:
                self.out.put(record, timeout=0.5)
                return
            except queue.Full:
                continue
