"""Helpers for tests of live log sources: journald, genuine kernel lines, a source thread.

Fixtures (import `journald_fixture` / `kernel_lines_fixture` into a test module,
or list this module in tests/conftest.py's `pytest_plugins`):

- `journald` (session): a systemd-journald that runs for the whole session. One
  already running is used and left alone; otherwise one is started, and the
  last test session that still uses it stops it by its pid. Parallel sessions
  share it through a shared lock on `STATE`, the same way `nf_log_all_netns`
  shares its sysctl.
- `kernel_lines` (module): `KernelLines`, which makes the kernel itself log a
  line with a fresh prefix: a UDP packet hits an nft `log` rule in a lab namespace.

`wait_for_entries()` polls the journal until an entry shows up; `SourceThread`
runs a source's `read()` on a thread and hands its records to the test.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pytest

from logknock.lab import Lab, nf_log_all_netns, wait_until
from logknock.models import LogRecord
from logknock.sources.base import Source

JOURNALD = "/lib/systemd/systemd-journald"
SOCKET = "/run/systemd/journal/socket"
STATE = Path("/run/logknock-test-journald.state")  # the pid of the journald a session started
HEADER_STATE, STATE_ARCHIVED = 16, 2  # the journal file header's state byte, and its last value
JOURNAL_DIRS = (Path("/run/log/journal"), Path("/var/log/journal"))
RAW: dict[str, Callable[[Any], Any]] = {
    "MESSAGE": bytes,
    "_TRANSPORT": bytes,
    "SYSLOG_FACILITY": bytes,
    "__REALTIME_TIMESTAMP": int,  # microseconds
}


def can_run_live() -> bool:
    return os.geteuid() == 0 and Path(JOURNALD).exists() and Path("/dev/kmsg").exists()


needs_live = pytest.mark.skipif(not can_run_live(), reason="needs root, /dev/kmsg and journald")


# journald


def journald_running(path: str = SOCKET) -> bool:
    """True when something accepts datagrams on journald's socket (a file alone is not enough)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            return False
    return True


@pytest.fixture(scope="session", name="journald")
def journald_fixture() -> Iterator[None]:
    if not can_run_live():
        pytest.skip("needs root, /dev/kmsg and journald")
    with shared_journald():
        yield


@contextlib.contextmanager
def shared_journald(state: Path = STATE) -> Iterator[None]:
    """A running journald while the block runs; stopped after if a session of ours started it."""
    holder = state.open("a+")
    try:
        with _mutex(state):
            fcntl.flock(holder, fcntl.LOCK_SH)
            if not journald_running():
                _start(holder)
        yield
    finally:
        holder.close()
        _stop_if_last(state)


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # journalds this process started


def _start(holder: IO[str]) -> None:
    proc = subprocess.Popen([JOURNALD], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    _CHILDREN[proc.pid] = proc
    holder.seek(0)
    holder.truncate()
    holder.write(f"{proc.pid}\n")
    holder.flush()
    wait_until(journald_running, "journald's socket", timeout=10)


def _stop_if_last(state: Path) -> None:
    """Stop the journald a session of ours started, unless another session still uses it."""
    with _mutex(state), state.open("r+") as holders:
        try:
            fcntl.flock(holders, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another session still needs it; the last one stops it
        pid = holders.read().strip()
        if pid.isdigit():
            _stop(int(pid))
        holders.truncate(0)


def _stop(pid: int) -> None:
    if _comm(pid) != "systemd-journal":
        return  # gone already, or the pid was reused
    os.kill(pid, signal.SIGTERM)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.wait(timeout=10)
    else:
        wait_until(lambda: _comm(pid) in (None, "zombie"), f"journald {pid} to stop", timeout=10)


def _comm(pid: int) -> str | None:
    """The process's name, "zombie" for one that exited unreaped, None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
    return "zombie" if state in "ZX" else name


@contextlib.contextmanager
def _mutex(state: Path) -> Iterator[None]:
    with state.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def journald_pid() -> int:
    """The pid of the running journald (to signal it: SIGUSR2 rotates its files)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and _comm(int(proc.name)) == "systemd-journal":
            return int(proc.name)
    raise LookupError("no systemd-journald runs")


def archived_files() -> set[Path]:
    """The journal files journald has rotated away (`system@....journal`)."""
    return {path for root in JOURNAL_DIRS for path in root.glob("*/system@*.journal")}


def rotate_journal() -> set[Path]:
    """Rotate journald's files (SIGUSR2, as `journalctl --rotate` does); return the new archives."""
    before = archived_files()
    os.kill(journald_pid(), signal.SIGUSR2)
    wait_until(lambda: bool(archived_files() - before), "journald to rotate", timeout=10)
    new = archived_files() - before
    wait_until(lambda: all(map(_archived, new)), "journald to finish its archives", timeout=10)
    return new


def _archived(path: Path) -> bool:
    """journald has finished the file: its header says ARCHIVED (the offlining is asynchronous)."""
    with path.open("rb") as journal_file:
        header = journal_file.read(HEADER_STATE + 1)
    return header.startswith(b"LPKSHHRH") and header[HEADER_STATE] == STATE_ARCHIVED


def wait_for_entries(
    marker: bytes, *, since: float, count: int = 1, timeout: float = 10, path: str | None = None
) -> list[dict[str, Any]]:
    """The journal entries since `since` whose MESSAGE contains `marker`, once `count` are in."""
    deadline = time.monotonic() + timeout
    while len(found := _entries(marker, since, path)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(found)} of {count} journal entries with {marker!r}")
        time.sleep(0.05)
    return found


def _entries(marker: bytes, since: float, path: str | None) -> list[dict[str, Any]]:
    from systemd import journal

    with journal.Reader(path=path, converters=RAW) as reader:
        reader.seek_realtime(since)
        return [entry for entry in reader if marker in entry.get("MESSAGE", b"")]


def file_holds(path: Path, marker: bytes) -> bool:
    """Whether the journal file at `path` has an entry whose MESSAGE contains `marker`."""
    from systemd import journal

    with journal.Reader(files=[str(path)], converters=RAW) as reader:
        return any(marker in entry.get("MESSAGE", b"") for entry in reader)


# Genuine kernel lines

SEND_UDP = """
import socket, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.sendto(b"knock", (sys.argv[1], int(sys.argv[2])))
"""
TABLE = "inet lksrctest"


class KernelLines:
    """Genuine kernel log lines: each `emit()` logs one line with a prefix never used before."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self._run = secrets.token_hex(3)
        self._count = 0
        self._nft(f"add table {TABLE}",
                  f"add chain {TABLE} input {{ type filter hook input priority 0; }}")  # fmt: skip

    def emit(self) -> bytes:
        """Make the kernel log one line; return its prefix, which no other line contains."""
        self._count += 1
        prefix = f"lksrc-{self._run}-{self._count}: "
        port = 20000 + self._count
        self._nft(f'add rule {TABLE} input udp dport {port} log prefix "{prefix}" drop')
        send = [sys.executable, "-c", SEND_UDP, str(self.lab.server_v4), str(port)]
        self.lab.run_in(self.lab.client_ns, send)
        return prefix.encode()

    def _nft(self, *lines: str) -> None:
        script = "\n".join([*lines, ""]).encode()
        self.lab.run_in(self.lab.server_ns, ["nft", "-f", "-"], input=script)


@pytest.fixture(scope="module", name="kernel_lines")
def kernel_lines_fixture() -> Iterator[KernelLines]:
    if not can_run_live():
        pytest.skip("needs root, /dev/kmsg and journald")
    with nf_log_all_netns(), Lab("lksrc") as lab:
        yield KernelLines(lab)


# Sources on a thread


class SourceThread:
    """Runs `source.read()` on a thread; the test takes the records it yielded."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.stop = threading.Event()
        self.records: queue.Queue[LogRecord] = queue.Queue()
        self.seen: list[LogRecord] = []
        self.thread = threading.Thread(target=self._run, name=f"source-{source.name}")

    def __enter__(self) -> SourceThread:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Set `stop`, wait for the source to return, and take every record it yielded."""
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the source did not return after stop was set"
        while not self.records.empty():
            self.seen.append(self.records.get())

    def _run(self) -> None:
        for record in self.source.read(self.stop):
            self.records.put(record)

    def until(self, found: Callable[[LogRecord], bool], timeout: float = 15) -> list[LogRecord]:
        """Records taken so far, through the first one `found` accepts."""
        deadline = time.monotonic() + timeout
        while not any(found(record) for record in self.seen):
            if not self.thread.is_alive() and self.records.empty():
                raise AssertionError(f"{self.source.name} returned early (pytest shows why)")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.source.name}: no wanted record in {len(self.seen)}")
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.records.get(timeout=min(left, 0.1)))
        return self.seen

    def containing(self, marker: bytes) -> list[LogRecord]:
        return [record for record in self.seen if marker in record.data]
