"""CPU: the daemon's processor time while unrelated log lines arrive (run by bench/latency.py).

In each source kind's lab, after the knocks, the daemon is measured for
`--cpu-seconds` under each load of its kind, `--rate` lines per second:

- idle: nothing sent; the daemon's floor.
- kernel (kmsg, journal): genuine kernel LOG lines under another firewall's
  prefix (`[UFW BLOCK] `): UDP packets from the client to port 9 of the
  server, where a chain of our own (table inet lkbenchnoise, priority -20,
  before logknock's) logs and drops them. The daemon reads every one of them
  (the journal's `_TRANSPORT=kernel` match lets them through) and drops it at
  the prefix test.
- native (journal): entries sent with `journal.send`, as services log; the
  reader's match keeps them out inside libsystemd, but they wake it.
- append (file): lines as rsyslog writes them, appended to the file the
  daemon follows (the lab's rsyslogd only writes lines with our prefix).

CPU = the daemon process's user + system time, all threads, from
/proc/PID/stat before and after; % = of one core. "daemon read" is the lines
its source handed to the pipeline meanwhile (status), proof that the load
reached it. A generator runs as a child process, paced in 5 ms ticks:

    python bench/cpu.py --emit kernel|native|append --rate N --seconds S --target T
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure as m

if TYPE_CHECKING:
    from latency_lab import Live

LOADS = {"kmsg": ("idle", "kernel"), "journal": ("idle", "kernel", "native"),
         "file": ("idle", "append")}  # fmt: skip
NOISE_PORT = 9
NOISE_RULES = f"""\
table inet lkbenchnoise {{
    chain input {{
        type filter hook input priority -20; policy accept;
        udp dport {NOISE_PORT} log prefix "[UFW BLOCK] " level warn drop
    }}
}}
"""
TICK = 0.005
HEADER = ("source", "load", "seconds", "lines sent", "lines/s", "daemon read", "cpu s",
          "% of a core")  # fmt: skip


@dataclass(frozen=True)
class Usage:
    kind: str
    load: str
    seconds: float
    sent: int
    read: int  # lines the daemon's source passed on meanwhile
    cpu: float  # the daemon's user + system seconds
    stored: int | None = None  # native: entries journald kept


def measure_all(live: Live, seconds: float, rate: int) -> list[Usage]:
    """The daemon's CPU under each load of its source kind."""
    live.lab.run_in(live.lab.server_ns, ["nft", "-f", "-"], input=NOISE_RULES.encode())
    usages = []
    for load in LOADS[live.kind]:
        print(f"-- {live.kind}: cpu, {load} for {seconds:g} s", file=sys.stderr)
        usages.append(measure(live, load, seconds, rate))
    return usages


def measure(live: Live, load: str, seconds: float, rate: int) -> Usage:
    """The daemon's CPU time and lines read from the generator's first line to its last."""
    tag = f"lkbench-noise-{secrets.token_hex(3)}"
    with generator(live, load, seconds, rate, tag) as finish:
        start, cpu, read = time.monotonic(), cpu_seconds(live.pid), live.lines_read()
        sent = finish()
        elapsed, cpu = time.monotonic() - start, cpu_seconds(live.pid) - cpu
        read = live.lines_read() - read
    stored = journal_count(tag) if load == "native" else None
    return Usage(live.kind, load, elapsed, sent, read, cpu, stored)


def cpu_seconds(pid: int) -> float:
    """User + system time of every thread of `pid` so far, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def generator(
    live: Live, load: str, seconds: float, rate: int, tag: str
) -> Iterator[Callable[[], int]]:
    """The load's generator, started and ready to send; call the value to wait for its
    end and get the number of lines it sent (idle: wait `seconds`, none sent)."""
    if load == "idle":
        yield lambda: _idle(seconds)
        return
    target = {"kernel": f"{live.lab.server_v4}:{NOISE_PORT}", "append": str(live.kernel_log),
              "native": tag}[load]  # fmt: skip
    argv = [sys.executable, __file__, "--emit", load, "--rate", str(rate),
            "--seconds", str(seconds), "--target", target]  # fmt: skip
    if load == "kernel":
        argv = ["ip", "netns", "exec", live.lab.client_ns, *argv]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "start":
                raise SystemExit(f"the {load} generator failed:\n{proc.communicate()[1][-2000:]}")
            yield lambda: _finished(proc, load, seconds)
        finally:
            if proc.poll() is None:  # interrupted: do not wait for it to end by itself
                proc.kill()


def _idle(seconds: float) -> int:
    time.sleep(seconds)
    return 0


def _finished(proc: subprocess.Popen[str], load: str, seconds: float) -> int:
    out, err = proc.communicate(timeout=seconds + 60)
    if proc.returncode != 0:
        raise SystemExit(f"the {load} generator failed:\n{err[-2000:]}")
    return int(out.split()[0])


def journal_count(tag: str) -> int:
    from systemd import journal

    with journal.Reader() as reader:
        reader.add_match(SYSLOG_IDENTIFIER=tag)
        return sum(1 for _ in reader)


def table(usages: Sequence[Usage], rate: int) -> str:
    rows = [[u.kind, u.load, f"{u.seconds:.1f}", f"{u.sent:,}", m.rate(u.sent, u.seconds),
             f"{u.read:,}", f"{u.cpu:.2f}", f"{100 * u.cpu / u.seconds:.1f}"]
            for u in usages]  # fmt: skip
    notes = [f"native: {u.stored:,} of {u.sent:,} entries kept by journald"
             for u in usages if u.stored is not None]  # fmt: skip
    title = f"CPU of the daemon: idle, and under {rate:,} unrelated log lines per second"
    return m.table(title, HEADER, rows) + "".join(f"{note}\n" for note in notes)


# The generators (child processes)


def generate(write: Callable[[int], None], rate: int, seconds: float) -> int:
    """Call write(n) in ticks so that `rate` lines a second go out for `seconds`."""
    start, sent, total = time.monotonic(), 0, int(rate * seconds)
    while sent < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        if due > sent:
            write(due - sent)
            sent = due
        time.sleep(TICK)
    return sent


def writer(load: str, target: str) -> AbstractContextManager[Callable[[int], None]]:
    return {"kernel": _udp, "append": _file, "native": _journal}[load](target)


@contextmanager
def _udp(target: str) -> Iterator[Callable[[int], None]]:
    host, port = target.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:

        def send(count: int) -> None:
            for _ in range(count):
                sock.sendto(b"noise", (host, int(port)))

        yield send


@contextmanager
def _file(target: str) -> Iterator[Callable[[int], None]]:
    import lines

    packets = lines.Packets(random.Random(1))
    with open(target, "a", encoding="utf-8") as log:

        def append(count: int) -> None:
            stamp = datetime.now(UTC).isoformat(timespec="microseconds")
            log.write("".join(f"{stamp} lab kernel: {packets.foreign('198.18.0.2')}\n"
                              for _ in range(count)))  # fmt: skip
            log.flush()

        yield append


@contextmanager
def _journal(target: str) -> Iterator[Callable[[int], None]]:
    import lines
    from systemd import journal

    rng, peers = random.Random(1), ["198.18.0.2", "198.18.7.9"]

    def send(count: int) -> None:
        for _ in range(count):
            journal.send(lines.noise(rng, peers)[1], SYSLOG_IDENTIFIER=target)

    yield send


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one load generator of bench/latency.py")
    parser.add_argument("--emit", choices=("kernel", "native", "append"), required=True)
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--target", required=True)
    args = parser.parse_args(argv)
    with writer(args.emit, args.target) as write:
        print("start", flush=True)
        print(generate(write, args.rate, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
