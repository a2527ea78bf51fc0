"""`patterns selftest --live`: its verdicts, its rules, and a real run on this kernel."""

from __future__ import annotations

import io
import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from logknock import selftest
from logknock.errors import UsageError
from logknock.fixtures import CaseRunner, read_cases
from logknock.lab import NF_LOG_ALL_NETNS, Lab, list_namespaces
from logknock.matcher import Matcher
from logknock.packs import load_pack
from logknock.selftest_cases import (
    IPT_PREFIX_MAX,
    NFT_PREFIX_MAX,
    Case,
    Rule,
    build_cases,
    fragment_count,
)

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = str(ROOT / "patterns")
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$", re.MULTILINE)

# Genuine lines from kernel 6.18 (nft), the prefix and ports left to fill in.
UDP_LINE = (
    "{pri},383,593624643,-;{prefix}IN=veth-s OUT= MAC=f2:70:04:c0:0f:69:46:60:e6:dc:b9:d7:08:00 "
    "SRC=198.18.0.2 DST=198.18.0.1 LEN=29 TOS=0x00 PREC=0x00 TTL=64 ID=13386 "
    "PROTO=UDP SPT={spt} DPT={dpt} LEN=9 "
)
ICMP_ERROR_LINE = (
    "4,388,593982110,-;{prefix}IN= OUT=veth-s SRC=198.18.0.1 DST=198.18.0.2 LEN=57 TOS=0x00 "
    "PREC=0xC0 TTL=64 ID=2993 PROTO=ICMP TYPE=3 CODE=3 [SRC=198.18.0.2 DST=198.18.0.1 LEN=29 "
    "TOS=0x00 PREC=0x00 TTL=64 ID=13426 PROTO=UDP SPT={spt} DPT={dpt} LEN=9 ] "
)


def _netns_usable() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    return subprocess.run(["ip", "netns", "list"], capture_output=True, check=False).returncode == 0


needs_lab = pytest.mark.skipif(not _netns_usable(), reason="needs root and `ip netns`")


def _cases(backend: str = "nft") -> dict[str, Case]:
    return {c.name: c for c in build_cases(Lab("lkunit"), "0a0b0c", 0, backend)}


def _judge(case: Case, *records: str) -> selftest.Result:
    matcher = Matcher(load_pack("netfilter", PATTERNS), case.prefix, "kmsg")
    return selftest.judge("nft", case, [r.encode() for r in records], matcher)


def _udp_line(case: Case, pri: int = 4, dpt: int | None = None) -> str:
    dport = case.packet.dport if dpt is None else dpt
    return UDP_LINE.format(pri=pri, prefix=case.prefix, spt=case.packet.sport, dpt=dport)


# The verdict on captured lines.


def test_the_line_of_the_packet_sent_passes() -> None:
    case = _cases()["udp"]
    result = _judge(case, _udp_line(case))
    assert result.ok, result.problems
    assert result.parsed == (case.expected[0].describe(),)


def test_a_port_other_than_the_one_sent_fails() -> None:
    case = _cases()["udp"]
    result = _judge(case, _udp_line(case, dpt=case.packet.dport + 1))
    want = f"dpt: sent {case.packet.dport}, parsed {case.packet.dport + 1}"
    assert result.problems == (want,)


def test_a_missing_line_fails() -> None:
    result = _judge(_cases()["udp"])
    assert result.problems == ("1 line(s) expected, 0 logged",)


def test_a_level_other_than_the_rule_s_fails() -> None:
    case = _cases()["udp"]
    result = _judge(case, _udp_line(case, pri=6))
    assert result.problems == ("kmsg priority 6, the rule asked for level 4",)


def test_a_line_written_from_userspace_is_not_taken_for_the_kernel_s() -> None:
    case = _cases()["udp"]
    result = _judge(case, _udp_line(case, pri=12))  # facility user: not the kernel
    assert not result.ok
    assert "not-kernel" in result.problems[0]


def test_the_quoted_packet_s_ports_are_not_the_icmp_error_s() -> None:
    case = _cases()["icmp-error"]
    line = ICMP_ERROR_LINE.format(prefix=case.prefix, spt=40007, dpt=7007)
    result = _judge(case, line)
    assert result.ok, result.problems
    assert case.expected[0].dpt is None


# The rules and cases.


def test_nft_rule_logs_with_prefix_level_and_every_flag() -> None:
    rule = Rule("input", ipaddress.ip_address("2001:db8:18::2"),
                ipaddress.ip_address("2001:db8:18::1"), "tcp", dport=7012, level=7,
                all_options=True)  # fmt: skip
    assert rule.nft("lk: ") == (
        "ip6 saddr 2001:db8:18::2 ip6 daddr 2001:db8:18::1 meta l4proto tcp tcp dport 7012 "
        'log prefix "lk: " level debug flags all'
    )


def test_iptables_rule_for_fragments_goes_before_reassembly() -> None:
    rule = Rule("prerouting", ipaddress.ip_address("198.18.0.2"),
                ipaddress.ip_address("198.18.0.1"), "udp")  # fmt: skip
    assert rule.iptables("iptables-legacy", "lk: ") == [
        "iptables-legacy", "-w", "-t", "mangle", "-A", "PREROUTING", "-s", "198.18.0.2",
        "-d", "198.18.0.1", "-p", "udp", "-j", "LOG", "--log-prefix", "lk: ",
        "--log-level", "4",
    ]  # fmt: skip


def test_iptables_icmp_error_rule_names_its_type() -> None:
    rule = _cases("iptables-nft")["icmp6-error"].rule
    argv = rule.iptables("ip6tables-nft", "lk: ")
    assert argv[argv.index("--icmpv6-type") + 1] == "destination-unreachable"
    assert argv[argv.index("-A") + 1] == "OUTPUT"


@pytest.mark.parametrize(("payload", "family", "count"), [(3008, 4, 3), (3008, 6, 3), (9, 4, 1)])
def test_fragment_count(payload: int, family: int, count: int) -> None:
    assert fragment_count(payload, family) == count


@pytest.mark.parametrize(
    ("backend", "limit"), [("nft", NFT_PREFIX_MAX), ("iptables-nft", IPT_PREFIX_MAX)]
)
def test_case_prefixes_are_distinct_and_fit_the_back_end(backend: str, limit: int) -> None:
    cases = list(_cases(backend).values())
    assert len({c.prefix for c in cases}) == len(cases)
    assert max(len(c.prefix) for c in cases) == limit
    assert len({(c.packet.sport, c.packet.dport) for c in cases}) == len(cases)


def test_an_unknown_back_end_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown back end ipchains"):
        selftest.run(backends=("ipchains",), patterns_dir=PATTERNS, out=io.StringIO())


# Live runs: real namespaces, real rules, the real kernel log.


def _ours_left() -> list[str]:
    return [n for n in list_namespaces() if n.startswith(f"lkst-{os.getpid()}-")]


@pytest.mark.root
@pytest.mark.slow
@needs_lab
def test_selftest_passes_on_this_kernel() -> None:
    before = NF_LOG_ALL_NETNS.read_text()
    out = io.StringIO()
    code = selftest.run(patterns_dir=PATTERNS, out=out)
    text = out.getvalue()
    summary = SUMMARY.findall(text)
    assert summary, text
    passed, failed = map(int, summary[-1])
    assert (code, failed) == (0, 0), text
    assert passed > 0
    assert NF_LOG_ALL_NETNS.read_text() == before
    assert _ours_left() == []


@pytest.mark.root
@needs_lab
def test_a_back_end_without_its_tools_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(selftest.BACKENDS, "iptables-legacy", ("lk-no-such-tool",))
    out = io.StringIO()
    code = selftest.run(patterns_dir=PATTERNS, out=out, backends=("iptables-legacy",))
    assert "SKIP iptables-legacy: lk-no-such-tool not found" in out.getvalue()
    assert SUMMARY.findall(out.getvalue()) == [("0", "0")]
    assert code == 1, "a run that tested nothing has not passed"


@pytest.mark.root
@pytest.mark.slow
@needs_lab
def test_saved_lines_make_a_fixture_file_that_passes(tmp_path: Path) -> None:
    saved = tmp_path / "live.txt"
    with saved.open("w") as out:
        selftest.run(patterns_dir=PATTERNS, out=io.StringIO(), backends=("nft",), save=out)
    runner = CaseRunner(load_pack("netfilter", PATTERNS))
    cases = list(read_cases(saved))
    assert len(cases) >= len(_cases())
    failures = [(case.where, runner.run(case)[1]) for case in cases if runner.run(case)[1]]
    assert failures == []
