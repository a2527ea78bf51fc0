"""Sending knocks: one UDP datagram or one TCP SYN per step, in order.

    resolve("server.example", 4) -> Target           getaddrinfo; the first address
    send_sequence(target, steps, delay=0.2) -> (Sent, ...)
    claim_one_time(path) -> Claim                     the first unused line, marked used

A UDP knock is one datagram (empty unless a payload is given). A TCP knock is
a non-blocking connect() closed at once, with SO_LINGER {1, 0}: the kernel has
sent exactly one SYN and then forgets the connection, so it sends no
retransmit, and no RST for a socket still in SYN_SENT. tests/test_client.py
counts the SYNs the server logs over 3 s on the real kernel. Ordinary sockets
only: no root needed.

A one-time file is the client's own copy of the server's list. A used line is
commented out as `# used TIME: LINE` before anything is sent (a line is burnt
rather than ever sent twice); a line equal to one already used is skipped too,
since the server names used lines by their text.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import re
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from .config_values import parse_step
from .errors import ConfigError, Location, LogknockError, UsageError
from .onetime import parse_one_time, parse_token
from .schema import Step
from .state import fsync_dir

MAX_PAYLOAD = 1400  # stays below common path MTUs, so a knock is never fragmented
_FAMILIES = {None: socket.AF_UNSPEC, 4: socket.AF_INET, 6: socket.AF_INET6}
_LINGER_ABORT = struct.pack("ii", 1, 0)  # struct linger {l_onoff = 1, l_linger = 0}
_SENT_CODES = (0, errno.EINPROGRESS, errno.ECONNREFUSED)  # the SYN left in each case
_USED = re.compile(r"# used \S+: (?P<line>.*)", re.DOTALL)


class KnockError(LogknockError):
    """A knock could not be sent at all (the host does not resolve): exit 1."""


@dataclass(frozen=True, slots=True)
class Target:
    """The address knocked, as getaddrinfo gave it (IPv6 keeps its scope id)."""

    host: str  # as the user wrote it
    family: socket.AddressFamily
    sockaddr: tuple[Any, ...]  # (address, port[, flowinfo, scope_id])

    @property
    def address(self) -> str:
        return str(self.sockaddr[0])

    def at_port(self, port: int) -> tuple[Any, ...]:
        return (self.sockaddr[0], port, *self.sockaddr[2:])


@dataclass(frozen=True, slots=True)
class Sent:
    """One knock and whether the kernel sent it."""

    step: Step
    error: str | None = None  # why it was not sent; None when it went out


@dataclass(frozen=True, slots=True)
class Claim:
    """The one-time line taken: its steps and where it was."""

    steps: tuple[Step, ...]
    line: int  # from 1


def resolve(host: str, family: int | None = None) -> Target:
    """The first address getaddrinfo returns for `host` (4, 6 or None for either)."""
    _check_literal(host, family)
    try:
        found = socket.getaddrinfo(host, None, _FAMILIES[family], socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        wanted = f" as IPv{family}" if family else ""
        raise KnockError(f"cannot resolve {host}{wanted}: {exc.strerror}") from None
    af, _, _, _, sockaddr = found[0]
    return Target(host, af, tuple(sockaddr))


def _check_literal(host: str, family: int | None) -> None:
    """An address of the other family is a usage error, not a failed lookup."""
    try:
        version = ipaddress.ip_address(host.partition("%")[0]).version
    except ValueError:
        return  # a name: getaddrinfo decides
    if family is not None and version != family:
        raise UsageError(f"{host} is an IPv{version} address, but -{family} asks for IPv{family}")


def send_knock(target: Target, step: Step, payload: bytes = b"") -> None:
    """Send one knock; OSError when the kernel refuses to send it."""
    if step.proto == "udp":
        with socket.socket(target.family, socket.SOCK_DGRAM) as sock:
            sock.sendto(payload, target.at_port(step.port))
    else:
        _send_syn(target, step.port)


def _send_syn(target: Target, port: int) -> None:
    """Exactly one SYN: connect without waiting, then abort the connection."""
    with socket.socket(target.family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)
        code = sock.connect_ex(target.at_port(port))
    if code not in _SENT_CODES:
        raise OSError(code, os.strerror(code))


def send_sequence(
    target: Target,
    steps: Sequence[Step],
    *,
    delay: float = 0.0,
    payload: bytes = b"",
    sleep: Callable[[float], None] = time.sleep,
    send: Callable[[Target, Step, bytes], None] = send_knock,
    report: Callable[[Sent], None] = lambda sent: None,
) -> tuple[Sent, ...]:
    """Send each step in order, `delay` seconds apart (not after the last).

    A step that fails does not stop the others; `report` sees each result as
    it happens.
    """
    results: list[Sent] = []
    for index, step in enumerate(steps):
        if index:
            sleep(delay)
        try:
            send(target, step, payload)
            results.append(Sent(step))
        except OSError as exc:
            results.append(Sent(step, exc.strerror or str(exc)))
        report(results[-1])
    return tuple(results)


def sendable(step: Step) -> Step:
    """`step` when a plain SYN (or a datagram) satisfies it; ValueError otherwise."""
    if step.flags_set - {"SYN"} or "SYN" in step.flags_unset:
        raise ValueError(f"'{step}': a TCP knock is a plain SYN, which cannot match these flags")
    return step


def parse_cli_step(word: str) -> Step:
    """A step on the command line: `7000/udp`, knockd's `7000:udp`, or `7000` (tcp)."""
    if word.endswith(":"):
        raise ValueError(f"'{word}': name the protocol after ':', like {word}udp")
    step = parse_step(word) if "/" in word else parse_token(word)
    return sendable(step)


def check_payload(data: bytes) -> bytes:
    if len(data) > MAX_PAYLOAD:
        raise ValueError(f"the payload has {len(data)} bytes; {MAX_PAYLOAD} at most")
    return data


def read_payload(spec: str) -> bytes:
    """`--payload`: the text itself (UTF-8), or the bytes of file `@PATH`."""
    if not spec.startswith("@"):
        return _checked_payload(spec.encode())
    path = os.path.expanduser(spec[1:])
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PAYLOAD + 1)
    except OSError as exc:
        raise UsageError(f"--payload: cannot read {path}: {exc.strerror or exc}") from None
    return _checked_payload(data)


def _checked_payload(data: bytes) -> bytes:
    try:
        return check_payload(data)
    except ValueError as exc:
        raise UsageError(f"--payload: {exc}") from None


def claim_one_time(path: str, now: float | None = None) -> Claim:
    """Take the first unused line of one-time file `path`, marking it used first.

    The file is locked while its new text is written beside it and renamed
    over it: two clients never take the same line, and a crash leaves the old
    file or the new one. ConfigError when no line is left or it cannot be
    marked (then nothing may be sent).
    """
    real = os.path.realpath(path)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    with _locked(real) as handle:
        lines = _decoded(handle.read(), path).splitlines(keepends=True)
        claim = _first_unused(lines, path)
        lines[claim.line - 1] = f"# used {stamp}: {lines[claim.line - 1]}"
        _replace(real, "".join(lines).encode(), os.fstat(handle.fileno()))
    return claim


@contextmanager
def _locked(path: str) -> Iterator[IO[bytes]]:
    """`path` open and flock-ed; retried when another client renamed a new file over it."""
    while True:
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below, or handed to the caller
        except OSError as exc:
            raise ConfigError([(Location(path), f"cannot read: {exc.strerror}")]) from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            if _same_file(handle, path):
                yield handle
                return


def _same_file(handle: IO[bytes], path: str) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def _decoded(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([(Location(path), f"not UTF-8 text (byte {exc.start})")]) from None


def _first_unused(lines: list[str], path: str) -> Claim:
    parse_one_time("".join(lines), path)  # every bad step reported with line:column
    used = {_used_steps(line, path) for line in lines} - {None}
    for number, line in enumerate(lines, start=1):
        found = parse_one_time(line, path)
        if found and found[0] not in used:
            return Claim(found[0], number)
    raise ConfigError([(Location(path), "every one-time sequence has been used")])


def _used_steps(line: str, path: str) -> tuple[Step, ...] | None:
    """The steps of a line this client marked used, None for any other line."""
    match = _USED.fullmatch(line.rstrip("\r\n"))
    try:
        found = parse_one_time(match["line"], path) if match else ()
    except ConfigError:
        return None  # edited by hand beyond reading: it holds no usable line anyway
    return found[0] if found else None


def _replace(path: str, data: bytes, old: os.stat_result) -> None:
    """Write `data` beside `path` with its mode (and owner, as root), then rename over it."""
    folder = os.path.dirname(path)
    try:
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.")
    except OSError as exc:
        raise ConfigError([(Location(path), f"cannot mark the line used: {exc}")]) from None
    try:
        _write_all(fd, data, old)
        os.replace(temp, path)
    except OSError as exc:
        os.unlink(temp)
        raise ConfigError([(Location(path), f"cannot mark the line used: {exc}")]) from None
    fsync_dir(folder)


def _write_all(fd: int, data: bytes, old: os.stat_result) -> None:
    with os.fdopen(fd, "wb") as out:
        os.fchmod(fd, old.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.fchown(fd, old.st_uid, old.st_gid)
        out.write(data)
        out.flush()
        os.fsync(fd)
