"""Waking a file reader when its file changes, through watchdog (inotify).

The watch is on the file's directory, so a rename, a deletion and a new file
of that name are all seen. It only wakes the reader: the handler runs on
watchdog's thread and sets an event, and the reader does all the I/O. It is an
accelerator, never the only signal: inotify can overflow, and the directory may
not exist yet or be replaced, so the reader also looks at the file on its own
every poll interval, and `refresh()` starts the watch again when it can.

Works with watchdog 2.2 (Debian 12) and current releases: `recursive=` is
passed by keyword and `event_filter=` (missing in 2.2) is not used.
"""

from __future__ import annotations

import logging
import os
import threading

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

log = logging.getLogger(__name__)

# Our own reads open and close the file: those events must not wake us again.
QUIET = frozenset({"opened", "closed_no_write"})


class _Wake(FileSystemEventHandler):  # type: ignore[misc,unused-ignore]  # Any in 2.2
    def __init__(self, name: str, wake: threading.Event) -> None:
        super().__init__()
        self._name = name
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in QUIET:
            return
        paths = (event.src_path, getattr(event, "dest_path", ""))
        if any(os.path.basename(os.fsdecode(p)) == self._name for p in paths if p):
            self._wake.set()


class DirectoryWatch:
    """Sets `wake` whenever something happens to `path` or its name."""

    def __init__(self, path: str, wake: threading.Event) -> None:
        self._directory = os.path.dirname(os.path.abspath(path))
        self._handler = _Wake(os.path.basename(path), wake)
        self._observer: BaseObserver | None = None
        self._inode: int | None = None
        self._broken = False  # inotify refused (no watches left): polling only

    def refresh(self) -> None:
        """Start the watch, or start it again when the directory was replaced."""
        inode = _inode(self._directory)
        if self._broken or (self._observer is not None and inode == self._inode):
            return
        self.close()
        if inode is None:
            return
        try:
            self._observer = _start(self._directory, self._handler)
        except OSError as exc:
            log.warning("cannot watch %s (%s): polling it instead", self._directory, exc)
            self._broken = True
        self._inode = inode if self._observer else None

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
        self._observer = None


def _inode(directory: str) -> int | None:
    try:
        return os.stat(directory).st_ino
    except FileNotFoundError:
        return None


def _start(directory: str, handler: _Wake) -> BaseObserver | None:
    """A running observer on `directory`, or None when it does not exist (now)."""
    observer = Observer()
    started = False
    try:
        observer.schedule(handler, directory, recursive=False)
        observer.start()
        started = True
    except (FileNotFoundError, NotADirectoryError):
        return None  # gone again: the next refresh tries once more
    finally:
        if not started:
            observer.stop()  # current watchdog starts a reader thread in Observer()
    return observer
