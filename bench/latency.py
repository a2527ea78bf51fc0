"""Latency: from a knock packet leaving a client to its hook starting, on the real kernel.

    python bench/latency.py [--knocks 200] [--gap 50] [--sources kmsg,journal,file]
                            [--cpu-seconds 20] [--rate 2000] [--quick]

Needs root. For each source kind (kmsg, journal, file), bench/latency_lab.py
builds a lab: two network namespaces, the rendered rules, journald or an
rsyslogd when the kind needs one, and `logknock run` in the server namespace
with a one-step sequence whose hook appends bash's clock (`$EPOCHREALTIME`,
a builtin: no fork) as its first command. Each knock comes from an address
of its own, so no two knocks meet in the tracker; the client takes
`time.time_ns()` right before `sendto`, and knocks leave `--gap` ms apart so
that none waits for another. Latency = the hook's clock - the send time, on
the same host clock. It covers the kernel's log line, the line's way to the
daemon (journald or rsyslogd included), the daemon's pipeline, the decision
journaled durably before its hook runs (one flushed append to the state
journal), and the hook's start through sh (fork, exec, bash starting).
"line p50/p99": send -> the line visible where the daemon reads it, seen
by a thread of this script polling /dev/kmsg, the journal (polled, not
waited on) or the file every millisecond: the log path's own share.
Baselines: the same hook started here with no log and no daemon, by the
daemon's hook runner (`logknock.hooks.run_hook`) and by `subprocess.run`.

Then bench/cpu.py measures the same daemon's CPU use, idle and under
unrelated log lines. Everything the run creates (namespaces, daemons,
journald or rsyslogd, the nf_log_all_netns sysctl) is removed or restored at
the end, on errors and Ctrl-C too. Exit status 1 when a knock opened nothing
or a hook ran for an address that did not knock.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cpu
import measure as m
from latency_lab import (
    LAB_PREFIX,
    PROTECTED,
    Live,
    Skipped,
    hook_starts,
    knock_addresses,
    live_lab,
    send_knocks,
    write_hook,
)

from logknock.hooks import hook_environment, run_hook
from logknock.lab import LabError, remove_leftovers, wait_until
from logknock.models import Action, Decision

KINDS = ("kmsg", "journal", "file")
GOAL_MS = {"kmsg": 20.0, "file": 20.0, "journal": 50.0}
FLOOR_SOURCE = ipaddress.IPv4Address("198.19.0.1")  # addresses for the baseline's hook runs
POLL = 0.001  # the line watcher's period, seconds
SRC = re.compile(rb"SRC=(\S+)")
HEADER = ("source", "knocks", "hooks ran", "line p50", "line p99", "p50 ms", "p90 ms", "p99 ms",
          "max ms", "goal p99", "goal met")  # fmt: skip


@dataclass(frozen=True)
class Latency:
    label: str
    knocks: int
    delays_ms: tuple[float, ...]  # sorted, one per knock whose hook ran
    unexpected: int  # hooks run for addresses that did not knock
    goal_ms: float | None
    seen_ms: tuple[float, ...] = ()  # sorted: send -> line visible in the source
    in_order: tuple[float, ...] = ()  # the delays in the order the knocks were sent

    @property
    def missing(self) -> int:
        return self.knocks - len(self.delays_ms)


def measure_latency(live: Live, knocks: int, gap_ms: float) -> Latency:
    with LineWatcher(live) as watcher:
        sent = send_knocks(live, knock_addresses(knocks), gap_ms)
        with contextlib.suppress(LabError):  # the missing ones are counted below
            wait_until(lambda: set(sent) <= set(hook_starts(live.hook_log)), "the hooks", 10)
    started = hook_starts(live.hook_log)
    unexpected = set(started) - set(sent) - {str(live.lab.client_v4)}
    in_order = tuple((started[src] - sent[src]) / 1e6 for src in sent if src in started)
    return Latency(live.kind, len(sent), _delays(sent, started), len(unexpected),
                   GOAL_MS[live.kind], _delays(sent, watcher.seen), in_order)  # fmt: skip


def _delays(sent: dict[str, int], later: dict[str, int]) -> tuple[float, ...]:
    """Sorted milliseconds from each address's send time to its later time, where there is one."""
    return tuple(sorted((later[src] - sent[src]) / 1e6 for src in sent if src in later))


class LineWatcher:
    """When each knock's line became visible where the daemon reads it, polled every
    millisecond on a thread: /dev/kmsg, the journal (polled: no waiting on journald's
    notification), or the file rsyslogd writes."""

    def __init__(self, live: Live) -> None:
        self.prefix = live.prefix.encode()
        self.seen: dict[str, int] = {}  # address -> epoch ns
        self._reader = {"kmsg": _kmsg, "journal": _journal, "file": _file}[live.kind](live)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="line-watcher")

    def __enter__(self) -> LineWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with self._reader as read:
            while not self._stop.is_set():
                lines, now = read(), time.time_ns()
                for line in lines:
                    if self.prefix in line and (found := SRC.search(line)):
                        self.seen.setdefault(found[1].decode(), now)
                if not lines:
                    time.sleep(POLL)


@contextmanager
def _kmsg(_live: Live) -> Iterator[Callable[[], list[bytes]]]:
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    os.lseek(fd, 0, os.SEEK_END)

    def read() -> list[bytes]:
        records = []
        while True:
            try:
                records.append(os.read(fd, 8192))
            except BlockingIOError:
                return records
            except BrokenPipeError:
                continue  # overwritten before we read it

    try:
        yield read
    finally:
        os.close(fd)


@contextmanager
def _journal(_live: Live) -> Iterator[Callable[[], list[bytes]]]:
    from systemd import journal

    with journal.Reader() as reader:
        reader.add_match(_TRANSPORT="kernel")
        reader.seek_tail()
        reader.get_previous()
        yield lambda: [str(entry["MESSAGE"]).encode() for entry in iter(reader.get_next, {})]


@contextmanager
def _file(live: Live) -> Iterator[Callable[[], list[bytes]]]:
    with live.kernel_log.open("rb") as log:
        log.seek(0, os.SEEK_END)
        yield lambda: log.read().splitlines()  # rsyslogd writes whole lines


def floors(count: int) -> list[Latency]:
    """Baselines: the same hook started with no log and no daemon, by the daemon's hook
    runner (`run_hook`: sh, a new session, output captured), and by a bare `subprocess.run`."""
    return [floor("hook runner alone", _run_hook, count),
            floor("subprocess.run alone", _subprocess, count)]  # fmt: skip


def floor(label: str, start: Callable[[Path, Decision], object], count: int) -> Latency:
    with tempfile.TemporaryDirectory(prefix="lkbench-floor-") as tmp:
        hook, log, sent = Path(tmp) / "stamp", Path(tmp) / "hooks.log", {}
        write_hook(hook, log)
        for i in range(count + 1):  # the first run imports what it needs: not counted
            src, now = FLOOR_SOURCE + i, time.time()
            decision = Decision(now, Action.OPEN, src, "bench", (f"{PROTECTED}/tcp",), now + 600)
            sent[str(src)] = time.time_ns()
            start(hook, decision)
        del sent[str(FLOOR_SOURCE)]
        started = hook_starts(log)
    return Latency(label, count, _delays(sent, started), 0, None)


def _run_hook(hook: Path, decision: Decision) -> object:
    return run_hook(hook, decision, decision.at, 10)


def _subprocess(hook: Path, decision: Decision) -> object:
    env = hook_environment(decision, decision.at)
    return subprocess.run([str(hook), decision.action.value], env=env, cwd="/", check=True,
                          stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


# Report


def percentile(values: tuple[float, ...], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


def latency_row(row: Latency) -> list[str]:
    d, seen = row.delays_ms, row.seen_ms
    lines = [f"{percentile(seen, q):.1f}" for q in (0.5, 0.99)] if seen else ["-", "-"]
    figures = [f"{percentile(d, q):.1f}" for q in (0.5, 0.9, 0.99)] + [f"{d[-1]:.1f}"] if d else []
    return [row.label, str(row.knocks), str(len(d)), *lines, *(figures or ["-"] * 4),
            *_goal(row)]  # fmt: skip


def by_grants(rows: list[Latency]) -> str:
    """Median latency by quarter of the run: knock N finds N-1 grants open already."""
    rows = [row for row in rows if len(row.in_order) >= 4]
    if not rows:
        return ""
    size = min(len(row.in_order) for row in rows) // 4
    header = ["source", *(f"knocks {q * size + 1}-{(q + 1) * size}" for q in range(4))]
    cells = [[row.label, *(f"{statistics.median(row.in_order[q * size : (q + 1) * size]):.1f}"
                          for q in range(4))] for row in rows]  # fmt: skip
    return m.table("Median latency (ms) by quarter: every knock leaves a grant open", header, cells)


def _goal(row: Latency) -> list[str]:
    if row.goal_ms is None:
        return ["", ""]
    if row.missing or row.unexpected:
        return [f"<= {row.goal_ms:g}", f"NO ({row.missing} missing, {row.unexpected} unexpected)"]
    met = percentile(row.delays_ms, 0.99) <= row.goal_ms
    return [f"<= {row.goal_ms:g}", "yes" if met else "NO"]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = m.common_args(__doc__.split("\n\n")[0])
    parser.add_argument("--knocks", type=int, default=200, help="knocks per source kind")
    parser.add_argument("--gap", type=float, default=50.0, help="ms between two knocks")
    parser.add_argument("--sources", default=",".join(KINDS), help="kinds to measure")
    parser.add_argument("--cpu-seconds", type=float, default=20.0, help="0: no CPU measurement")
    parser.add_argument("--rate", type=int, default=2000, help="unrelated lines per second")
    args = parser.parse_args(argv)
    args.sources = [kind for kind in args.sources.split(",") if kind]
    if unknown := set(args.sources) - set(KINDS):
        parser.error(f"unknown source kinds: {', '.join(sorted(unknown))}")
    if not 1 <= args.knocks <= 60_000:
        parser.error("--knocks must be 1 to 60000")
    if args.quick:
        args.knocks, args.cpu_seconds = min(args.knocks, 50), min(args.cpu_seconds, 5.0)
    return args


def _stop(signum: int, _frame: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds the labs: everything is cleaned up


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("nft")):
        print("latency.py: skipped: needs root, ip and nft (network namespaces, real rules)")
        return 0
    signal.signal(signal.SIGTERM, _stop)
    remove_leftovers(LAB_PREFIX)
    latencies, usages, notes = [], [], []
    for kind in args.sources:
        print(f"-- {kind}: lab, {args.knocks} knocks {args.gap:g} ms apart", file=sys.stderr)
        try:
            with live_lab(kind, args.knocks) as live:
                latencies.append(measure_latency(live, args.knocks, args.gap))
                if args.cpu_seconds > 0:
                    usages += cpu.measure_all(live, args.cpu_seconds, args.rate)
        except Skipped as exc:
            notes.append(f"{kind}: skipped: {exc}")
    latencies += floors(min(args.knocks, 100))
    print(m.table("Latency: knock packet sent -> hook started (ms)", HEADER,
                  [latency_row(row) for row in latencies]))  # fmt: skip
    print(by_grants(latencies))
    if usages:
        print(cpu.table(usages, args.rate))
    print("\n".join(notes))
    return 1 if any(row.missing or row.unexpected for row in latencies) else 0


if __name__ == "__main__":
    sys.exit(main())
