"""`logknock patterns selftest --live`: the pack against this kernel's own lines.

What an operator runs after a kernel upgrade. In a throwaway namespace pair
(`logknock.lab`) each case installs one log rule in the server namespace,
sends one known packet (`logknock.packets`), reads the lines the kernel wrote
from /dev/kmsg and checks that the pack parses each one to exactly the packet
that was sent. Every case runs once per firewall back end: nft, iptables-nft
and iptables-legacy. The case table lives in `logknock.selftest_cases`.

Each case's log prefix starts with a random token of this run, so lines of
other runs or tests can never be taken for ours.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import TextIO

import logknock

from .errors import UsageError
from .lab import KernelLog, Lab, LabError, nf_log_all_netns, remove_leftovers
from .matcher import DEFAULT_PREFIX, Matcher
from .models import Event, Match, Origin
from .packs import Pack, load_pack
from .selftest_cases import MTU, Case, Expected, Rule, build_cases

BACKENDS = {
    "nft": ("nft",),
    "iptables-nft": ("iptables-nft", "ip6tables-nft"),
    "iptables-legacy": ("iptables-legacy", "ip6tables-legacy"),
}
LINE_TIMEOUT = 5.0  # seconds to wait for a case's lines; they normally take microseconds
NFT_TABLE = "inet lkselftest"


@dataclass(frozen=True, slots=True)
class Result:
    backend: str
    case: Case
    parsed: tuple[str, ...]
    problems: tuple[str, ...]
    records: tuple[bytes, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class Bench:
    """What every case of one back end runs with."""

    lab: Lab
    klog: KernelLog
    pack: Pack
    backend: str


class Report:
    """Prints one line per case and owns the counts and the exit code."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.passed = self.failed = 0
        self.results: list[Result] = []

    def skip(self, backend: str, why: str) -> None:
        print(f"SKIP {backend}: {why}", file=self.out)

    def add(self, result: Result) -> None:
        self.results.append(result)
        case = result.case
        head = f"{result.backend} {case.name}: sent {case.packet.describe()}"
        if result.ok:
            self.passed += 1
            print(f"PASS {head}; parsed {'; '.join(result.parsed)}", file=self.out)
            return
        self.failed += 1
        print(f"FAIL {head}; {'; '.join(result.problems)}", file=self.out)
        for record in result.records:
            print(f"    {record.decode('utf-8', 'backslashreplace')}", file=self.out)

    def finish(self) -> int:
        print(f"{self.passed} passed, {self.failed} failed", file=self.out)
        return 0 if self.passed and not self.failed else 1


def run(
    *,
    pack_spec: str = "netfilter",
    patterns_dir: str | None = None,
    out: TextIO = sys.stdout,
    backends: Sequence[str] = ("nft", "iptables-nft", "iptables-legacy"),
    save: TextIO | None = None,
) -> int:
    """Run every case on every back end; return 0 when all passed, else 1.

    `save` receives the captured kernel lines as a pattern fixture file, each
    with the expectation of the packet actually sent.
    """
    unknown = [name for name in backends if name not in BACKENDS]
    if unknown:
        raise UsageError(f"unknown back end {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    pack = load_pack(pack_spec, patterns_dir)
    problem = _preflight()
    if problem:
        print(f"selftest: {problem}", file=out)
        return 1
    report = Report(out)
    for name in remove_leftovers("lkst"):
        print(f"removed namespace {name} left behind by a crashed selftest", file=out)
    with nf_log_all_netns(), Lab("lkst", mtu=MTU) as lab, KernelLog() as klog:
        _prepare(lab)
        token = secrets.token_hex(3)
        for index, backend in enumerate(backends):
            bench = Bench(lab, klog, pack, backend)
            _run_backend(bench, report, build_cases(lab, token, index, backend))
        if klog.lost:
            print(f"note: the kernel overwrote {klog.lost} unread log records", file=out)
    if save is not None:
        write_fixture(save, report.results)
    return report.finish()


def _preflight() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, firewall rules, /dev/kmsg)"
    if shutil.which("ip") is None:
        return "needs `ip` from iproute2"
    if not os.access("/dev/kmsg", os.R_OK):
        return "cannot read /dev/kmsg"
    return None


def _prepare(lab: Lab) -> None:
    """No ICMP rate limit in the server namespace: every error a case expects is sent."""
    lab.set_sysctl(lab.server_ns, "net.ipv4.icmp_ratelimit", "0")
    lab.set_sysctl(lab.server_ns, "net.ipv6.icmp.ratelimit", "0")


def _run_backend(bench: Bench, report: Report, cases: list[Case]) -> None:
    lab, backend = bench.lab, bench.backend
    missing = [tool for tool in BACKENDS[backend] if shutil.which(tool) is None]
    if missing:
        report.skip(backend, f"{', '.join(missing)} not found")
        return
    try:
        _setup(lab, backend)
    except LabError as exc:
        report.skip(backend, f"cannot use it here: {exc}")
        return
    try:
        for case in cases:
            report.add(run_case(bench, case))
    finally:
        _teardown(lab, backend)


def run_case(bench: Bench, case: Case) -> Result:
    """Install the case's rule, send its packet, and judge the lines logged."""
    lab, klog, backend = bench.lab, bench.klog, bench.backend
    try:
        _install(lab, backend, case.rule, case.prefix)
        try:
            klog.skip_to_end()
            _send(lab, case)
            wanted = partial(_has_prefix, case.prefix.encode())
            records = klog.collect(wanted, len(case.expected), LINE_TIMEOUT)
        finally:
            _flush(lab, backend)
    except LabError as exc:
        return Result(backend, case, (), (str(exc),), ())
    return judge(backend, case, records, Matcher(bench.pack, case.prefix, "kmsg"))


def _has_prefix(prefix: bytes, record: bytes) -> bool:
    return record.partition(b";")[2].startswith(prefix)


def _send(lab: Lab, case: Case) -> None:
    ns = lab.server_ns if case.from_server else lab.client_ns
    package_parent = str(Path(logknock.__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, (package_parent, os.environ.get("PYTHONPATH"))))
    env = dict(os.environ, PYTHONPATH=path)
    argv = [sys.executable, "-m", "logknock.packets", case.packet.to_json()]
    lab.run_in(ns, argv, env=env, timeout=15)


def judge(backend: str, case: Case, records: Sequence[bytes], matcher: Matcher) -> Result:
    """Compare each logged line, as the pack parses it, with what was sent."""
    problems: list[str] = []
    if len(records) != len(case.expected):
        problems.append(f"{len(case.expected)} line(s) expected, {len(records)} logged")
    parsed: list[str] = []
    for number, (record, expected) in enumerate(zip(records, case.expected, strict=False), 1):
        label = f"line {number}: " if len(case.expected) > 1 else ""
        text, found = _check_line(matcher.match(record), record, expected, case.rule.level)
        parsed.append(label + text)
        problems += [label + problem for problem in found]
    return Result(backend, case, tuple(parsed), tuple(problems), tuple(records))


def _check_line(
    match: Match, record: bytes, expected: Expected, level: int
) -> tuple[str, list[str]]:
    if match.event is None:
        return f"rejected: {match.rejection}", [f"rejected: {match.rejection}"]
    got = expected_from(match.event)
    problems = [
        f"{key}: sent {want!r}, parsed {have!r}"
        for key in (f.name for f in fields(Expected))
        if (want := getattr(expected, key)) != (have := getattr(got, key))
    ]
    origin = match.envelope.origin if match.envelope else None
    if origin is not Origin.KERNEL:
        problems.append(f"origin {origin}, expected kernel")
    priority = record.partition(b",")[0]
    if priority != str(level).encode():
        problems.append(f"kmsg priority {priority.decode()}, the rule asked for level {level}")
    return got.describe(), problems


def expected_from(event: Event) -> Expected:
    return Expected(
        src=event.src,
        dst=event.dst,
        proto=event.proto,
        spt=event.spt,
        dpt=event.dpt,
        flags=event.tcp_flags,
        fragment=event.fragment,
        in_iface=event.in_iface,
        out_iface=event.out_iface,
    )


# Rules: one table (nft) or the filter and mangle tables (iptables) of the server namespace.


def _setup(lab: Lab, backend: str) -> None:
    if backend == "nft":
        hooks = (("prerouting", -300), ("input", 0), ("output", 0))
        lines = [f"add table {NFT_TABLE}"] + [
            f"add chain {NFT_TABLE} {hook} {{ type filter hook {hook} priority {prio}; }}"
            for hook, prio in hooks
        ]
        _nft(lab, lines)
    else:
        for tool in _iptables_tools(backend):
            lab.run_in(lab.server_ns, [tool, "-w", "-t", "filter", "-L", "-n"])


def _teardown(lab: Lab, backend: str) -> None:
    if backend == "nft":
        _nft(lab, [f"delete table {NFT_TABLE}"])
    else:
        _flush(lab, backend)


def _flush(lab: Lab, backend: str) -> None:
    if backend == "nft":
        _nft(lab, [f"flush table {NFT_TABLE}"])
        return
    for tool in _iptables_tools(backend):
        for table in ("filter", "mangle"):
            lab.run_in(lab.server_ns, [tool, "-w", "-t", table, "-F"])


def _install(lab: Lab, backend: str, rule: Rule, prefix: str) -> None:
    if backend == "nft":
        _nft(lab, [f"add rule {NFT_TABLE} {rule.chain} {rule.nft(prefix)}"])
    else:
        tool = _iptables_tools(backend)[0 if rule.family == 4 else 1]
        lab.run_in(lab.server_ns, rule.iptables(tool, prefix))


def _nft(lab: Lab, lines: Sequence[str]) -> None:
    lab.run_in(lab.server_ns, ["nft", "-f", "-"], input="\n".join([*lines, ""]).encode())


def _iptables_tools(backend: str) -> tuple[str, str]:
    suffix = backend.removeprefix("iptables")
    return f"iptables{suffix}", f"ip6tables{suffix}"


def write_fixture(out: TextIO, results: Sequence[Result]) -> None:
    """The captured lines as a pattern fixture, prefix core renamed to `logknock`."""
    print("# Genuine kernel lines captured by `logknock patterns selftest --live`", file=out)
    print(f"# on Linux {platform.release()}: one case per kind, from the first back end", file=out)
    print("# that ran it; each expectation is the packet actually sent.", file=out)
    print("# envelope: kmsg", file=out)
    done: set[str] = set()
    for result in results:
        if result.case.name in done or len(result.records) != len(result.case.expected):
            continue
        done.add(result.case.name)
        _write_case(out, result)
    print(f"\n# prefix: {json.dumps(DEFAULT_PREFIX)}", file=out)


def _write_case(out: TextIO, result: Result) -> None:
    case = result.case
    prefix = "logknock" + case.prefix.removeprefix(case.core)
    print(f"\n# {case.name} ({result.backend}): sent {case.packet.describe()}", file=out)
    print(f"# prefix: {json.dumps(prefix)}", file=out)
    for record, expected in zip(result.records, case.expected, strict=True):
        print(f"#> {json.dumps(expected.as_fixture())}", file=out)
        head, _, message = record.partition(b";")
        message = b"logknock" + message.removeprefix(case.core.encode())
        print((head + b";" + message).decode("utf-8", "backslashreplace"), file=out)
