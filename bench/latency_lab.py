"""The live lab behind bench/latency.py and bench/cpu.py: one source kind, on the real kernel.

`live_lab(kind, knocks)` builds a server and a client network namespace
(logknock.lab) with one client address per knock (198.18.1.1 on, in
198.18.0.0/16), loads the rules `logknock firewall render --apply` renders
in the server, starts what brings kernel lines to the source, and runs
`logknock run` in the server namespace reading

- kmsg: /dev/kmsg;
- journal: the journal of a systemd-journald (one that runs already is used,
  else one is started and stopped after, shared with test sessions through
  tests/journald.py's `shared_journald`);
- file: a file written by an rsyslogd started for the lab: imklog alone, and
  only kernel lines with the lab's prefix (the filter of
  packaging/rsyslog/logknock.conf), stopped after by its pid.

The configuration has one sequence of one step (`knock: [7000/udp]`), so
every knock opens, and a prefix of its own, so no other test's lines count.
The hook is a bash script whose first command appends bash's clock
(`$EPOCHREALTIME`, a builtin: no fork), the action and the address to
`hooks.log`. One warm-up knock from the client's own address goes first.
Everything is removed on leaving, on errors and Ctrl-C too: the daemon,
rsyslogd or a journald we started, the namespaces, the nf_log_all_netns
sysctl, the temporary folder.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import measure as m

from logknock.control import call
from logknock.errors import LogknockError
from logknock.lab import Lab, LabError, nf_log_all_netns, wait_until

LAB_PREFIX = "lkbench"
KNOCK_PORT, PROTECTED = 7000, 2222
FIRST_SOURCE = ipaddress.IPv4Address("198.18.1.1")  # the client's knock addresses, in 198.18/16
RSYSLOGD = "/usr/sbin/rsyslogd"

CONFIG = """\
source: {source}
prefix: "{prefix}"
state_dir: {root}/state
hooks_dir: {root}/hooks
control_socket: {root}/control
defaults: {{open_for: 10m, hook: stamp}}
sequences:
  bench:
    knock: [{port}/udp]
    open: [{protected}/tcp]
"""
HOOK = """#!/bin/bash
# First command: bash's clock as this hook starts (a builtin, no fork), the action, the address.
printf '%s %s %s\\n' "$EPOCHREALTIME" "$1" "$LOGKNOCK_SRC" >> {log}
"""
RSYSLOG = """\
global(workDirectory="{root}")
module(load="imklog")
if $inputname == "imklog" and $syslogfacility-text == "kern" and $msg contains "{prefix}" then {{
    action(type="omfile" file="{log}" template="RSYSLOG_FileFormat")
}}
"""
SENDER = """
import socket, sys, time
server, port, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) / 1000
for src in sys.argv[4:]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((src, 0))
        sent = time.time_ns()
        sock.sendto(b"knock", (server, port))
    print(src, sent)
    time.sleep(gap)
"""


class Skipped(Exception):
    """This source kind cannot be measured here (the reason says why)."""


class BenchError(LogknockError):
    pass


@dataclass(frozen=True)
class Live:
    """One source kind's running lab: namespaces, rules, log supplier, daemon."""

    kind: str
    lab: Lab
    root: Path
    prefix: str
    pid: int = 0  # the daemon's

    @property
    def config(self) -> Path:
        return self.root / "logknock.yaml"

    @property
    def kernel_log(self) -> Path:
        return self.root / "kernel.log"

    @property
    def hook_log(self) -> Path:
        return self.root / "hooks.log"

    @property
    def source_name(self) -> str:
        return f"file:{self.kernel_log}" if self.kind == "file" else self.kind

    def status(self) -> dict[str, Any]:
        return call(str(self.root / "control"), {"cmd": "status"}, timeout=5)

    def lines_read(self) -> int:
        """Lines the daemon's source has handed to its pipeline so far."""
        return int(self.status()["sources"][self.source_name]["lines"])


@contextmanager
def live_lab(kind: str, knocks: int) -> Iterator[Live]:
    """A running lab for `kind`, with `knocks` client addresses; removed on exit."""
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"lkbench-{kind}-")))
        stack.enter_context(nf_log_all_netns())
        lab = stack.enter_context(Lab(LAB_PREFIX))
        live = Live(kind, lab, root, f"lkbench-{secrets.token_hex(3)}: ")
        _network(lab, knocks)
        _write_files(live)
        _firewall(live)
        stack.enter_context(_supplier(live))
        live = replace(live, pid=stack.enter_context(_daemon(live)))
        _warm_up(live)
        yield live


def knock_addresses(count: int) -> list[str]:
    return [str(FIRST_SOURCE + i) for i in range(count)]


def _network(lab: Lab, knocks: int) -> None:
    """Give the client one address per knock, and the server a route back to them."""
    batch = "".join(f"addr add {a}/16 dev {lab.client_if}\n" for a in knock_addresses(knocks))
    lab.run_in(lab.client_ns, ["ip", "-batch", "-"], input=batch.encode(), timeout=120)
    lab.run_in(lab.server_ns, ["ip", "route", "add", "198.18.0.0/16", "dev", lab.server_if])


def _write_files(live: Live) -> None:
    hooks = live.root / "hooks"
    hooks.mkdir(mode=0o755)
    write_hook(hooks / "stamp", live.hook_log)
    source = {
        "kmsg": "kmsg",
        "journal": "journal",
        "file": f"[{{file: {live.kernel_log}, trust: kernel-only, envelope: syslog}}]",
    }[live.kind]
    live.config.write_text(CONFIG.format(source=source, prefix=live.prefix, root=live.root,
                                         port=KNOCK_PORT, protected=PROTECTED))  # fmt: skip


def write_hook(path: Path, log: Path) -> None:
    path.write_text(HOOK.format(log=log))
    path.chmod(0o755)


def _firewall(live: Live) -> None:
    argv = [*m.logknock(), "firewall", "render", "--config", str(live.config),
            "--backend", "nft", "--apply"]  # fmt: skip
    live.lab.run_in(live.lab.server_ns, argv)


def _supplier(live: Live) -> AbstractContextManager[object]:
    """What brings kernel lines to the source: journald, rsyslogd, or nothing (kmsg)."""
    if live.kind == "journal":
        sys.path.insert(0, str(m.REPO / "tests"))
        from journald import can_run_live, shared_journald

        if not can_run_live():
            raise Skipped("no /lib/systemd/systemd-journald")
        return shared_journald()
    if live.kind == "file":
        return _rsyslogd(live)
    return nullcontext()


@contextmanager
def _rsyslogd(live: Live) -> Iterator[None]:
    if not Path(RSYSLOGD).exists():
        raise Skipped(f"no {RSYSLOGD} (apt-get install rsyslog)")
    if reader := kmsg_reader():
        raise Skipped(f"{reader} reads /proc/kmsg already; a second reader would split the lines")
    conf = live.root / "rsyslog.conf"
    conf.write_text(RSYSLOG.format(root=live.root, prefix=live.prefix, log=live.kernel_log))
    live.kernel_log.touch(mode=0o640)
    argv = [RSYSLOGD, "-n", "-f", str(conf), "-i", str(live.root / "rsyslogd.pid")]
    with child(argv, live.root / "rsyslogd.err"):
        yield


def kmsg_reader() -> str | None:
    """'NAME (PID)' of a process that has /proc/kmsg open, or None."""
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == "/proc/kmsg":
                pid = fd.parent.parent.name
                return f"{Path(f'/proc/{pid}/comm').read_text().strip()} ({pid})"
        except OSError:
            continue  # the process or the descriptor went away
    return None


@contextmanager
def child(
    argv: list[str], errors: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process started for the block, stderr to `errors`; stopped by its pid at the end."""
    with errors.open("ab") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, env=env)  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@contextmanager
def _daemon(live: Live) -> Iterator[int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFY_")}
    argv = ["ip", "netns", "exec", live.lab.server_ns, *m.logknock(), "run",
            "--config", str(live.config)]  # fmt: skip
    with child(argv, live.root / "daemon.err", env) as proc:  # `ip netns exec` execs: same pid
        wait_until(lambda: _answers(live, proc), "the daemon's control socket", timeout=30)
        yield proc.pid


def _answers(live: Live, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        tail = (live.root / "daemon.err").read_text()[-2000:]
        raise BenchError(f"the daemon exited {proc.returncode}:\n{tail}")
    try:
        return bool(live.status().get("ok"))
    except LogknockError:
        return False  # not listening yet


def _warm_up(live: Live) -> None:
    """Knock from the client's own address until its hook runs: the whole path works,
    the neighbour is resolved, and the daemon has imported what hooks need."""
    src = str(live.lab.client_v4)
    for _ in range(30):
        send_knocks(live, [src], 0)
        try:
            wait_until(lambda: src in hook_starts(live.hook_log), "the warm-up hook", timeout=1.0)
        except LabError:
            continue
        return
    tail = (live.root / "daemon.err").read_text()[-2000:]
    raise BenchError(f"{live.kind}: no hook ran for 30 warm-up knocks; the daemon said:\n{tail}")


# Knocks and hook starts


def send_knocks(live: Live, sources: list[str], gap_ms: float) -> dict[str, int]:
    """Knock once from each address, `gap_ms` apart; each one's send time in ns."""
    argv = [sys.executable, "-c", SENDER, str(live.lab.server_v4), str(KNOCK_PORT), str(gap_ms),
            *sources]  # fmt: skip
    done = live.lab.run_in(live.lab.client_ns, argv, timeout=len(sources) * gap_ms / 1000 + 30)
    pairs = (line.split() for line in done.stdout.decode().splitlines())
    return {src: int(ns) for src, ns in pairs}


def hook_starts(log: Path) -> dict[str, int]:
    """When the first `open` hook for each address started (epoch ns), from the hook log."""
    starts: dict[str, int] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        fields = line.split()
        if len(fields) == 3 and fields[1] == "open":  # else a line still being written
            starts.setdefault(fields[2], epoch_ns(fields[0]))
    return starts


def epoch_ns(stamp: str) -> int:
    """bash's `$EPOCHREALTIME` ("1795244838.405072") in nanoseconds, exactly."""
    seconds, _, fraction = stamp.partition(".")
    return int(seconds) * 10**9 + int(fraction.ljust(9, "0")[:9])
