"""A throwaway network-namespace lab: two namespaces joined by a veth pair.

    with nf_log_all_netns(), Lab() as lab:
        lab.run_in(lab.server_ns, ["nft", "-f", "-"], input=b"...")
        lab.run_in(lab.client_ns, [sys.executable, "-c", "..."])

The server namespace holds 198.18.0.1/24 and 2001:db8:18::1/64, the client
198.18.0.2 and 2001:db8:18::2 (benchmarking and documentation ranges only).
Namespace names carry our pid and a random token, so parallel runs never
collide and `remove_leftovers()` can tell which ones a dead run left behind.
Everything goes through `ip` with argv lists; nothing runs through a shell.

`nf_log_all_netns()` lets the namespaces' log rules reach the kernel log, and
`KernelLog` reads what the kernel wrote from /dev/kmsg after a given moment.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import secrets
import select
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import IO

from logknock.errors import LogknockError

NF_LOG_ALL_NETNS = Path("/proc/sys/net/netfilter/nf_log_all_netns")
NF_LOG_STATE = Path("/run/logknock-nf-log-all-netns.state")
_NAME_RE = r"(?P<pid>\d+)-[0-9a-f]{6}-(?:server|client)"


class LabError(LogknockError):
    """The lab could not be set up or a command inside it failed."""


def _ip(*args: str) -> str:
    """Run `ip ARGS...` and return its output; raise LabError when it fails."""
    return _checked(["ip", *args])


def _checked(argv: Sequence[str], *, input: bytes | None = None, timeout: float = 30) -> str:
    proc = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise LabError(f"{' '.join(argv)}: exit {proc.returncode}: {err}")
    return proc.stdout.decode(errors="replace")


def list_namespaces() -> list[str]:
    """The names of all named network namespaces (`ip netns list`)."""
    text = _ip("-j", "netns", "list").strip()
    return [entry["name"] for entry in json.loads(text)] if text else []


def delete_namespace(name: str) -> None:
    """Delete a namespace; deleting one that is already gone is not an error."""
    if name in list_namespaces():
        _ip("netns", "delete", name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(name_prefix: str = "lk") -> list[str]:
    """Delete the namespaces our crashed runs left behind; return their names.

    A namespace is ours if its name has the shape `Lab` gives it; it is a
    leftover if the pid in its name no longer runs.
    """
    pattern = re.compile(rf"{re.escape(name_prefix)}-{_NAME_RE}")
    removed = []
    for name in list_namespaces():
        found = pattern.fullmatch(name)
        if found and not _pid_alive(int(found["pid"])):
            delete_namespace(name)
            removed.append(name)
    return removed


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll `ready` until it is true; raise LabError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


class Lab:
    """Two namespaces, `server_ns` and `client_ns`, joined by a veth pair."""

    server_v4 = ipaddress.IPv4Address("198.18.0.1")
    client_v4 = ipaddress.IPv4Address("198.18.0.2")
    server_v6 = ipaddress.IPv6Address("2001:db8:18::1")
    client_v6 = ipaddress.IPv6Address("2001:db8:18::2")

    def __init__(
        self,
        name_prefix: str = "lk",
        *,
        server_if: str = "veth-s",
        client_if: str = "veth-c",
        mtu: int | None = None,
    ) -> None:
        base = f"{name_prefix}-{os.getpid()}-{secrets.token_hex(3)}"
        self.server_ns = f"{base}-server"
        self.client_ns = f"{base}-client"
        self.server_if = server_if
        self.client_if = client_if
        self.mtu = mtu

    def __enter__(self) -> Lab:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Delete both namespaces (and with them the veth pair). Idempotent."""
        for name in (self.server_ns, self.client_ns):
            delete_namespace(name)

    def _create(self) -> None:
        _ip("netns", "add", self.server_ns)
        _ip("netns", "add", self.client_ns)
        _ip("-n", self.server_ns, "link", "add", self.server_if, "type", "veth",
            "peer", "name", self.client_if, "netns", self.client_ns)  # fmt: skip
        self._address(self.server_ns, self.server_if, self.server_v4, self.server_v6)
        self._address(self.client_ns, self.client_if, self.client_v4, self.client_v6)
        for ns, iface in ((self.server_ns, self.server_if), (self.client_ns, self.client_if)):
            wait_until(partial(self._is_up, ns, iface), f"{iface} in {ns}")

    def _address(
        self, ns: str, iface: str, v4: ipaddress.IPv4Address, v6: ipaddress.IPv6Address
    ) -> None:
        _ip("-n", ns, "addr", "add", f"{v4}/24", "dev", iface)
        _ip("-n", ns, "addr", "add", f"{v6}/64", "dev", iface, "nodad")
        if self.mtu is not None:
            _ip("-n", ns, "link", "set", iface, "mtu", str(self.mtu))
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "set", iface, "up")

    @staticmethod
    def _is_up(ns: str, iface: str) -> bool:
        info = json.loads(_ip("-n", ns, "-j", "link", "show", "dev", iface))
        return bool(info) and "LOWER_UP" in info[0].get("flags", [])

    def run_in(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 30,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run argv inside namespace `ns` (no shell) and return the finished process."""
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, *argv],
            input=input,
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise LabError(f"in {ns}: {' '.join(argv)}: exit {proc.returncode}: {err}")
        return proc

    def set_sysctl(self, ns: str, key: str, value: str) -> None:
        """Set a per-namespace sysctl (`net.ipv4.icmp_ratelimit`...) inside `ns`."""
        self.run_in(ns, ["sysctl", "-q", "-w", f"{key}={value}"])


@contextmanager
def nf_log_all_netns(state: Path = NF_LOG_STATE) -> Iterator[None]:
    """Let netfilter log from every namespace while the block runs.

    Parallel runs share the sysctl: each holds a shared lock on `state` while
    it runs; the first saves the value it found there, and the last one to
    leave restores it. A crashed run releases its lock with its process.
    """
    holder = _hold_shared(state)
    try:
        yield
    finally:
        holder.close()
        _restore_if_last(state)


def _hold_shared(state: Path) -> IO[str]:
    """Take a shared hold on `state`; the first holder saves the value and sets 1."""
    with _mutex(state):
        holder = state.open("a+")
        fcntl.flock(holder, fcntl.LOCK_SH)
        holder.seek(0)
        if not holder.read().strip():
            holder.write(NF_LOG_ALL_NETNS.read_text().strip() + "\n")
            holder.flush()
        NF_LOG_ALL_NETNS.write_text("1\n")
    return holder


def _restore_if_last(state: Path) -> None:
    """Restore the saved value unless another run still holds `state`."""
    with _mutex(state), state.open("r+") as holders:
        try:
            fcntl.flock(holders, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another run still needs the sysctl; it restores when it leaves
        saved = holders.read().strip()
        if saved:
            NF_LOG_ALL_NETNS.write_text(saved + "\n")
            holders.truncate(0)


@contextmanager
def _mutex(state: Path) -> Iterator[None]:
    """Serialise the save/restore steps of all runs on one lock file."""
    with state.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class KernelLog:
    """The kernel log (/dev/kmsg) from "now" on: records written after `skip_to_end()`."""

    def __init__(self, path: str = "/dev/kmsg") -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self.lost = 0  # records the ring buffer overwrote before we read them (EPIPE)
        self.skip_to_end()

    def __enter__(self) -> KernelLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def skip_to_end(self) -> None:
        """Forget everything logged so far."""
        os.lseek(self._fd, 0, os.SEEK_END)

    def collect(self, wanted: Callable[[bytes], bool], count: int, timeout: float) -> list[bytes]:
        """Records `wanted` accepts, once `count` arrived or `timeout` passed.

        A record is returned as its first line (`pri,seq,usec,flags;message`)
        without the newline. Records already waiting past the count are
        returned too, so a test sees extra lines instead of missing them.
        """
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        found = self._drain(wanted)
        while len(found) < count and (left := deadline - time.monotonic()) > 0:
            if poller.poll(left * 1000):
                found += self._drain(wanted)
        return found

    def _drain(self, wanted: Callable[[bytes], bool]) -> list[bytes]:
        found: list[bytes] = []
        while True:
            try:
                data = os.read(self._fd, 8192)
            except BlockingIOError:
                return found
            except BrokenPipeError:
                self.lost += 1  # overwritten; the next read goes on with the oldest left
                continue
            record = data.split(b"\n", 1)[0]
            if wanted(record):
                found.append(record)
