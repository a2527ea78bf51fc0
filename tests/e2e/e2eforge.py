"""Forged kernel lines: ways a local process can put our prefix into the logs.

Each forgery writes one line per step of a valid sequence, for the client's
main address, in the exact text the kernel would log; unprivileged users
(uid 65534) send all but the /dev/kmsg write, which only root can do. Each
forgery must then be proven to have ARRIVED where the daemon's source reads,
or the test would prove nothing: `arrived()` waits for that proof.

| forgery | reaches | journal source | file source (rsyslog) | kmsg source |
| --- | --- | --- | --- | --- |
| logger | a syslog socket | journald's dev-log | rsyslog's own socket | never |
| raw-datagram | a syslog socket | journald's dev-log | rsyslog's own socket | never |
| systemd-cat | journald's stdout socket | yes | through imjournal | never |
| journal-send | journald's native socket | yes | through imjournal | never |
| kmsg-write | /dev/kmsg (facility user) | journald reads it | through imjournal | yes |
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from e2ecommon import CLIENT4, SERVER4, SSH, poll
from journald import wait_for_entries

from logknock.lab import KernelLog

if TYPE_CHECKING:
    from e2elab import E2ELab

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
# Debian's python3 (with python3-systemd) where there is one: a venv's interpreter
# may live where uid 65534 cannot read it.
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
DEV_LOG = "/run/systemd/journal/dev-log"
FORGERIES_FOR = {
    "journal": ("logger", "raw-datagram", "systemd-cat", "journal-send", "kmsg-write"),
    "file": ("logger", "raw-datagram", "systemd-cat", "journal-send", "kmsg-write"),
    "kmsg": ("kmsg-write",),  # nothing else can reach /dev/kmsg
}
RAW_DATAGRAM = """
import socket, sys
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
    for line in sys.argv[2:]:
        sock.sendto(b"<4>kernel: " + line.encode(), sys.argv[1])
"""
JOURNAL_SEND = """
import sys
from systemd import journal
for line in sys.argv[1:]:
    journal.send(line, SYSLOG_IDENTIFIER="kernel", SYSLOG_FACILITY="0", PRIORITY="4",
                 _TRANSPORT="kernel", _HOSTNAME="vm")  # the _ fields are journald's: dropped
"""


def forged_lines(prefix: str, src: str = CLIENT4) -> list[str]:
    """The kernel's text for the `ssh` sequence from `src`, with our prefix."""
    ip = f"SRC={src} DST={SERVER4} LEN=29 TOS=0x00 PREC=0x00 TTL=64 ID=4242 DF "
    mac = "MAC=02:00:00:00:00:01:02:00:00:00:00:02:08:00"
    lines = []
    for step in SSH:
        port, proto = step.split("/")
        l4 = (f"PROTO=UDP SPT=40000 DPT={port} LEN=9 " if proto == "udp"
              else f"PROTO=TCP SPT=40000 DPT={port} WINDOW=64240 RES=0x00 SYN URGP=0 ")  # fmt: skip
        lines.append(f"{prefix}IN=veth-s OUT= {mac} {ip}{l4}")
    return lines


def syslog_socket(lab: E2ELab) -> str:
    return str(lab.rsyslog.socket) if lab.rsyslog is not None else DEV_LOG


def logger(lab: E2ELab, lines: list[str]) -> None:
    for line in lines:
        subprocess.run([*NOBODY, "logger", "-u", syslog_socket(lab), "-t", "kernel",
                        "-p", "kern.warning", "--", line], check=True)  # fmt: skip


def raw_datagram(lab: E2ELab, lines: list[str]) -> None:
    argv = [*NOBODY, PYTHON, "-c", RAW_DATAGRAM, syslog_socket(lab), *lines]
    subprocess.run(argv, check=True)


def systemd_cat(lab: E2ELab, lines: list[str]) -> None:
    argv = [*NOBODY, "systemd-cat", "-t", "kernel", "-p", "warning"]
    subprocess.run(argv, input="\n".join(lines).encode() + b"\n", check=True)


def journal_send(lab: E2ELab, lines: list[str]) -> None:
    subprocess.run([*NOBODY, PYTHON, "-c", JOURNAL_SEND, *lines], check=True)


def kmsg_write(lab: E2ELab, lines: list[str]) -> None:
    """Root writes to /dev/kmsg; the kernel files it under facility user.

    journald takes a tag off such a record, so for the journal (and rsyslog
    reading it) the line gets the `kernel: ` tag the kernel's own lines
    carry there; /dev/kmsg readers see the bare line, as the kernel's own.
    A write without a final newline is a record the kernel keeps open for a
    continuation: readers only see it once the same task writes again.
    """
    tag = "" if lab.kind == "kmsg" else "kernel: "
    with open("/dev/kmsg", "wb", buffering=0) as kmsg:
        for line in lines:
            kmsg.write(f"<4>{tag}{line}\n".encode())  # without it the record stays open


FORGE: dict[str, Callable[[E2ELab, list[str]], None]] = {
    "logger": logger,
    "raw-datagram": raw_datagram,
    "systemd-cat": systemd_cat,
    "journal-send": journal_send,
    "kmsg-write": kmsg_write,
}


class Arrival:
    """Proof that forged lines reached what the lab's source reads, opened before forging."""

    def __init__(self, lab: E2ELab) -> None:
        self.lab = lab
        self.since = time.time()
        self.kmsg = KernelLog() if lab.kind == "kmsg" else None

    def __enter__(self) -> Arrival:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.kmsg is not None:
            self.kmsg.close()

    def prove(self, count: int) -> list[str]:
        """Wait for `count` forged lines; return how each arrived (what the source refuses)."""
        marker = f"SRC={CLIENT4} "
        if self.lab.kind == "journal":
            return _in_journal(self.lab.prefix + "IN=", marker, self.since, count)
        if self.lab.kind == "file":
            return _in_rsyslog(self.lab, marker, count)
        assert self.kmsg is not None
        return _in_kmsg(self.kmsg, self.lab.prefix, marker, count)


def _in_journal(prefix: str, marker: str, since: float, count: int) -> list[str]:
    entries = wait_for_entries(prefix.encode(), since=since, count=count)
    forged = [e for e in entries if marker.encode() in e["MESSAGE"]]
    assert len(forged) == count, f"{len(forged)} of {count} forged entries in the journal"
    return [_transport(entry) for entry in forged]


def _transport(entry: dict[str, Any]) -> str:
    facility = entry.get("SYSLOG_FACILITY", b"-").decode()
    return f"_TRANSPORT={entry['_TRANSPORT'].decode()} SYSLOG_FACILITY={facility}"


def _in_rsyslog(lab: E2ELab, marker: str, count: int) -> list[str]:
    rsyslog = lab.rsyslog
    assert rsyslog is not None

    def received() -> list[str]:
        got = rsyslog.lines(rsyslog.all_log, lab.prefix, marker)
        return got if len(got) >= count else []

    found = poll(received, f"{count} forged lines received by rsyslog")
    assert rsyslog.lines(rsyslog.kernel_log, marker) == [], "a forged line is in the kernel file"
    return [f"input {line.split(' ', 1)[0]}" for line in found]


def _in_kmsg(kmsg: KernelLog, prefix: str, marker: str, count: int) -> list[str]:
    def wanted(record: bytes) -> bool:
        return prefix.encode() in record and marker.encode() in record

    records = kmsg.collect(wanted, count, timeout=10)
    assert len(records) == count, f"{len(records)} of {count} forged records in /dev/kmsg"
    return [f"pri {record.split(b',', 1)[0].decode()}" for record in records]
