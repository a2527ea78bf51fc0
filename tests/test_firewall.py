"""`logknock firewall render`: the plan, the rendered rules, `problems`, and the
rules on the real kernel: syntax, idempotent loading, and what packets meet.

Configurations live in tests/fixtures/firewall/configs (each rendered and
syntax-checked with every back end) and tests/fixtures/firewall/problems (each
file lists the problems it must produce as `# expect:` lines). Adding a case
adds a file.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from logknock import cmd_firewall, firewall_iptables, firewall_live
from logknock.config import load, load_text
from logknock.errors import UsageError
from logknock.firewall import (
    FirewallError,
    Options,
    Rate,
    apply,
    live_problems,
    parse_rate,
    parse_services,
    plan,
    problems,
    render,
)
from logknock.firewall_model import Run
from logknock.lab import KernelLog, Lab, nf_log_all_netns
from logknock.schema import Config

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "firewall"
CONFIGS = [*sorted((FIXTURES / "configs").glob("*.yaml")), ROOT / "etc" / "example-full.yaml"]
PROBLEMS = sorted((FIXTURES / "problems").glob("*.yaml"))
PROBE = FIXTURES / "probe.py"
OPTION_SETS = {
    "default": Options(),
    "no-log-closed": Options(log_closed=False),
    "services-and-rate": Options(
        rate=Rate(1, "minute"), services=parse_services("80/tcp,5000/tcp,62000-63000/udp")
    ),
    "top-rate": Options(rate=Rate(10_000, "second")),
}


def _ranges(text: str) -> list[str]:
    return [str(r) for r in parse_services(text)]


# --- the plan: ports merged, rates and services parsed ---


@pytest.mark.parametrize(
    ("given", "merged"),
    [
        ("7000/udp,7001/udp", ["7000-7001/udp"]),
        ("40000-49999/udp,45000/udp", ["40000-49999/udp"]),
        ("22/tcp,22/udp", ["22/tcp", "22/udp"]),
        ("300/tcp,100-200/tcp,150-299/tcp,302/tcp", ["100-300/tcp", "302/tcp"]),
        ("9/tcp 9/tcp", ["9/tcp"]),
        ("", []),
    ],
)
def test_services_are_merged_into_disjoint_ranges(given: str, merged: list[str]) -> None:
    options = Options(services=parse_services(given))
    assert [str(r) for r in plan(Config(), options).services] == merged


@pytest.mark.parametrize(
    ("text", "rate", "burst", "refill"),
    [
        ("20/second", Rate(20, "second"), 40, 3),
        ("1/minute", Rate(1, "minute"), 2, 180),
        (" 7 ", Rate(7, "second"), 14, 3),
        ("10000/second", Rate(10_000, "second"), 20_000, 3),
    ],
)
def test_log_rate(text: str, rate: Rate, burst: int, refill: int) -> None:
    parsed = parse_rate(text)
    assert (parsed, parsed.burst, parsed.refill_seconds) == (rate, burst, refill)


@pytest.mark.parametrize("text", ["0/second", "20/hour", "x", "10001/second", "-1", "20/"])
def test_a_bad_log_rate_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--log-rate"):
        parse_rate(text)


@pytest.mark.parametrize("text", ["22", "22/icmp", "0/tcp", "70000/tcp", "30-20/tcp", "a/tcp"])
def test_a_bad_service_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--services"):
        parse_services(text)


def test_the_plan_of_the_full_example_holds_every_kind_of_knock() -> None:
    found = plan(load(ROOT / "etc" / "example-full.yaml"), Options())
    knocks = [str(r) for r in found.knocks]
    assert "40000-49999/udp" in knocks  # TOTP range
    assert {"3341/udp", "5892/tcp", "4790/tcp"} <= set(knocks)  # one-time lines
    assert {"7127/udp", "9311/tcp", "6977/tcp"} <= set(knocks)  # steps, one with flags
    assert [str(r) for r in found.protected] == ["22/tcp", "8080/tcp", "8443/tcp", "8443/udp"]
    assert len(found.notes) == 6


@pytest.mark.parametrize("service", ["9311/tcp", "45000/udp", "22/tcp", "8000-8100/tcp"])
def test_a_service_on_a_knock_or_protected_port_is_refused(service: str) -> None:
    config = load(ROOT / "etc" / "example-full.yaml")
    with pytest.raises(UsageError, match="overlaps"):
        render(config, "nft", Options(services=parse_services(service)))


# --- the rendered text ---


def _nft_rule_lines(text: str) -> list[str]:
    """The rule lines inside the chains of the final table block."""
    body = text.split("# 3. ", 1)[1]
    rules, inside = [], False
    for line in body.splitlines():
        stripped = line.strip()
        if stripped.startswith("chain "):
            inside = True
        elif stripped == "}":
            inside = False
        elif inside and stripped and not stripped.startswith(("#", "type filter")):
            rules.append(stripped)
    return rules


@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=list(OPTION_SETS))
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_nft_rule_carries_a_comment(path: Path, options: Options) -> None:
    rules = _nft_rule_lines(render(load(path), "nft", options))
    assert len(rules) >= 9
    assert [rule for rule in rules if not re.search(r' comment "[^"]+"$', rule)] == []


@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=list(OPTION_SETS))
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_iptables_rule_carries_a_comment(path: Path, options: Options) -> None:
    lines = render(load(path), "iptables", options).splitlines()
    rules = [line for line in lines if line.startswith("-A ")]
    assert len(rules) >= 8
    assert [rule for rule in rules if '-m comment --comment "' not in rule] == []
    others = [line for line in lines if not line.startswith(("-A ", "#", ":"))]
    assert others == ["*filter", "COMMIT"]


@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_the_log_rules_use_the_configured_prefix(backend: str) -> None:
    config = load(FIXTURES / "configs" / "totp.yaml")
    text = render(config, backend)
    assert text.count('prefix "totp knock: "') == 2  # IPv4 and IPv6


@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_no_log_closed_leaves_closed_ports_alone(backend: str) -> None:
    config = load(FIXTURES / "configs" / "minimal.yaml")
    closed = render(config, backend)
    quiet = render(config, backend, Options(log_closed=False))
    for marker in ("socket", "@services" if backend == "nft" else "pkttype"):
        assert marker in closed
        assert marker not in quiet


def test_iptables_multiport_lists_hold_at_most_15_ports_and_cover_every_knock() -> None:
    config = load(FIXTURES / "configs" / "one-time.yaml")
    text = render(config, "iptables")
    covered = []
    for proto, ports in re.findall(r"-p (tcp|udp) -m multiport --dports (\S+) .*knock port", text):
        items = ports.split(",")
        assert sum(2 if ":" in item else 1 for item in items) <= 15
        covered += [f"{item.replace(':', '-')}/{proto}" for item in items]
    assert sorted(covered) == sorted(str(r) for r in plan(config, Options()).knocks)
    assert len(covered) > 15


def test_iptables_refuses_a_prefix_it_would_cut() -> None:
    config = load(FIXTURES / "problems" / "long-prefix.yaml")
    with pytest.raises(UsageError, match="30 characters"):
        render(config, "iptables")
    assert 'log prefix "logknock-30-characters-prefix "' in render(config, "nft")


def test_a_29_character_prefix_is_fine_for_iptables() -> None:
    config = load(FIXTURES / "configs" / "one-time.yaml")
    assert len(config.prefix) == 29
    assert f'--log-prefix "{config.prefix}"' in render(config, "iptables")


def test_an_unknown_backend_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown firewall back end"):
        render(Config(), "pf")


def test_odd_characters_of_the_config_path_cannot_break_out_of_a_comment() -> None:
    config = load_text("sequences: {}\n", path="/etc/x\ny.yaml")
    for backend in ("nft", "iptables"):
        assert "\ny.yaml" not in render(config, backend)


# --- problems(): what the configuration alone shows ---


def _expectations(path: Path) -> tuple[str, list[str]]:
    text = path.read_text()
    backend = re.search(r"^# backend: (\S+)", text, re.MULTILINE)
    expected = re.findall(r"^# expect: (.+)$", text, re.MULTILINE)
    return (backend[1] if backend else "nft"), expected


@pytest.mark.parametrize("path", PROBLEMS, ids=[p.stem for p in PROBLEMS])
def test_problems_match_the_expectations_written_in_each_file(path: Path) -> None:
    backend, expected = _expectations(path)
    found = problems(load(path), backend)
    assert len(found) == len(expected), found
    for text in expected:
        assert [p for p in found if p.startswith(text)], f"{text!r} not in {found}"


# --- live_problems(): the loaded table, from recorded `nft -j` output ---


def _fake_nft(stdout: bytes = b"", stderr: bytes = b"", code: int = 0) -> Run:
    def run(argv: Sequence[str], input: bytes | None) -> subprocess.CompletedProcess[bytes]:
        assert list(argv) == firewall_live.LIST_TABLE
        return subprocess.CompletedProcess(list(argv), code, stdout, stderr)

    return run


LIVE_MINIMAL = (FIXTURES / "live-minimal.json").read_bytes()


def test_the_recorded_table_of_the_minimal_config_has_no_problem() -> None:
    config = load(FIXTURES / "configs" / "minimal.yaml")
    assert live_problems(config, _fake_nft(LIVE_MINIMAL)) == []


def test_a_table_missing_knock_ports_and_using_another_prefix_is_reported() -> None:
    config = load(FIXTURES / "configs" / "totp.yaml")
    found = live_problems(config, _fake_nft(LIVE_MINIMAL))
    assert any(
        p.startswith("set knocks lacks 40000-49999/tcp, 39999/udp, 49999-50000/udp") for p in found
    ), found
    assert any(p.startswith("set protected lacks 2222/tcp") for p in found), found
    assert any("prefix 'logknock: '" in p and "'totp knock: '" in p for p in found), found


def test_a_table_without_grant_sets_is_reported() -> None:
    data = json.loads(LIVE_MINIMAL)
    data["nftables"] = [item for item in data["nftables"] if "set" not in item]
    found = live_problems(Config(), _fake_nft(json.dumps(data).encode()))
    assert "set grants4 is missing: the hooks cannot open anything for IPv4" in found
    assert "set grants6 is missing: the hooks cannot open anything for IPv6" in found


@pytest.mark.parametrize(
    "stderr", [b"Error: No such file or directory", b"Error: Operation not permitted"]
)
def test_no_table_to_read_is_no_problem(stderr: bytes) -> None:
    assert live_problems(Config(), _fake_nft(stderr=stderr, code=1)) == []


def test_nft_missing_is_no_problem() -> None:
    def missing(argv: Sequence[str], input: bytes | None) -> subprocess.CompletedProcess[bytes]:
        raise FirewallError("nft: command not found")

    assert live_problems(Config(), missing) == []


def test_another_nft_failure_is_raised() -> None:
    with pytest.raises(FirewallError, match="netlink"):
        live_problems(Config(), _fake_nft(stderr=b"Error: netlink: broken", code=1))


# --- the command line ---


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logknock")
    cmd_firewall.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    code: int = args.func(args)
    return code


def test_render_prints_the_ruleset(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(FIXTURES / "configs" / "minimal.yaml")
    argv = ["firewall", "render", "-c", config, "--services", "80/tcp", "--services", "443/tcp"]
    assert _main([*argv, "--log-rate", "5/minute"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#!/usr/sbin/nft -f\n")
    assert "elements = { tcp . 80, tcp . 443 }" in out
    assert "limit rate 5/minute burst 10 packets" in out


def test_render_iptables_prints_the_restore_file(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(FIXTURES / "configs" / "minimal.yaml")
    assert _main(["firewall", "render", "-c", config, "--backend", "iptables"]) == 0
    assert "\n*filter\n:LOGKNOCK-RULES - [0:0]\n" in capsys.readouterr().out


@pytest.mark.parametrize(("flag", "value"), [("--log-rate", "fast"), ("--services", "22/sctp")])
def test_render_refuses_bad_flags(flag: str, value: str) -> None:
    config = str(FIXTURES / "configs" / "minimal.yaml")
    with pytest.raises(UsageError, match=flag):
        _main(["firewall", "render", "-c", config, flag, value])


# ======== on the real kernel, in throwaway namespaces (root) ========


def _netns_usable() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None:
        return False
    return subprocess.run(["ip", "netns", "list"], capture_output=True, check=False).returncode == 0


needs_lab = pytest.mark.skipif(not _netns_usable(), reason="needs root, `ip netns` and nft")
IPTABLES_VARIANTS = [v for v in ("nft", "legacy") if shutil.which(f"iptables-{v}-restore")]


def _runner(lab: Lab, ns: str | None = None) -> Run:
    """A `Run` that executes inside the lab's server namespace (or `ns`)."""

    def run(argv: Sequence[str], input: bytes | None) -> subprocess.CompletedProcess[bytes]:
        return lab.run_in(ns or lab.server_ns, argv, input=input, check=False)

    return run


@pytest.fixture(scope="module")
def syntax_lab() -> Iterator[Lab]:
    """One namespace pair for every syntax check: `-c` and `--test` change nothing."""
    with Lab("lkfw") as lab:
        for argv in firewall_iptables.ipset_commands():
            lab.run_in(lab.server_ns, argv)
        yield lab


@pytest.mark.root
@needs_lab
@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=list(OPTION_SETS))
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_nft_accepts_the_rendered_rules(syntax_lab: Lab, path: Path, options: Options) -> None:
    text = render(load(path), "nft", options)
    proc = syntax_lab.run_in(
        syntax_lab.server_ns, ["nft", "-c", "-f", "-"], input=text.encode(), check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()


@pytest.mark.root
@needs_lab
@pytest.mark.parametrize("variant", IPTABLES_VARIANTS)
@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=list(OPTION_SETS))
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_iptables_restore_accepts_the_rendered_rules_for_both_families(
    syntax_lab: Lab, path: Path, options: Options, variant: str
) -> None:
    text = render(load(path), "iptables", options).encode()
    for tool in ("iptables", "ip6tables"):
        argv = [f"{tool}-{variant}-restore", "--test"]
        proc = syntax_lab.run_in(syntax_lab.server_ns, argv, input=text, check=False)
        assert proc.returncode == 0, proc.stderr.decode()


@pytest.mark.root
@needs_lab
def test_nft_check_fails_on_a_broken_ruleset(syntax_lab: Lab) -> None:
    """The syntax checks above can fail: the same check refuses a mangled file."""
    text = render(load(CONFIGS[0]), "nft").replace("jump log_drop", "jump nowhere")
    proc = syntax_lab.run_in(
        syntax_lab.server_ns, ["nft", "-c", "-f", "-"], input=text.encode(), check=False
    )
    assert b"jump nowhere" in proc.stderr


# --- loading: `--apply` twice leaves one copy and keeps the grants ---

CLI = (
    "import argparse, sys\n"
    "from logknock import cmd_firewall\n"
    "parser = argparse.ArgumentParser(prog='logknock')\n"
    "cmd_firewall.register(parser.add_subparsers(dest='command', required=True))\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "sys.exit(args.func(args))\n"
)
ENV = dict(
    os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
)


def _cli_apply(lab: Lab, config: Path, *flags: str) -> str:
    argv = [sys.executable, "-c", CLI, "firewall", "render", "-c", str(config), "--apply", *flags]
    return lab.run_in(lab.server_ns, argv, env=ENV).stdout.decode()


def _inside(lab: Lab, *argv: str) -> str:
    return lab.run_in(lab.server_ns, argv).stdout.decode()


def _add_element(lab: Lab, name: str, element: str) -> None:
    _inside(lab, "nft", "add", "element", "inet", "logknock", name, f"{{ {element} }}")


def _nft_rules(lab: Lab) -> list[tuple[str, str]]:
    listing = json.loads(_inside(lab, "nft", "-j", "list", "table", "inet", "logknock"))
    rules = [item["rule"] for item in listing["nftables"] if "rule" in item]
    return [(rule["chain"], json.dumps(rule["expr"], sort_keys=True)) for rule in rules]


def _nft_elements(lab: Lab, name: str) -> list[object]:
    listing = json.loads(_inside(lab, "nft", "-j", "list", "set", "inet", "logknock", name))
    found = listing["nftables"][1]["set"].get("elem", [])
    return [elem["elem"]["val"]["concat"] if "elem" in elem else elem["concat"] for elem in found]


@pytest.mark.root
@needs_lab
def test_nft_apply_twice_leaves_one_copy_and_keeps_the_grants() -> None:
    config = FIXTURES / "configs" / "minimal.yaml"
    with Lab("lkfw") as lab:
        assert "loaded table inet logknock (nft)" in _cli_apply(lab, config)
        first = _nft_rules(lab)
        _add_element(lab, "grants4", "198.18.0.2 . tcp . 22 timeout 1h")
        _add_element(lab, "grants6", "2001:db8:18::2 . tcp . 22 timeout 1h")
        _cli_apply(lab, config)
        assert _nft_rules(lab) == first
        assert len(set(first)) == len(first) >= 10
        assert _inside(lab, "nft", "list", "tables").split() == ["table", "inet", "logknock"]
        assert _nft_elements(lab, "grants4") == [["198.18.0.2", "tcp", 22]]
        assert _nft_elements(lab, "grants6") == [["2001:db8:18::2", "tcp", 22]]
        assert live_problems(load(config), _runner(lab)) == []


@pytest.mark.root
@needs_lab
def test_nft_apply_of_another_config_replaces_the_ports_and_keeps_the_grants() -> None:
    minimal, totp = FIXTURES / "configs" / "minimal.yaml", FIXTURES / "configs" / "totp.yaml"
    with Lab("lkfw") as lab:
        _cli_apply(lab, minimal)
        _add_element(lab, "grants4", "198.18.0.2 . tcp . 22 timeout 1h")
        _cli_apply(lab, totp)
        assert ["udp", 7127] not in _nft_elements(lab, "knocks")
        assert ["tcp", {"range": [40000, 49999]}] in _nft_elements(lab, "knocks")
        assert _nft_elements(lab, "grants4") == [["198.18.0.2", "tcp", 22]]
        assert live_problems(load(totp), _runner(lab)) == []
        found = live_problems(load(minimal), _runner(lab))
        assert any(p.startswith("set knocks lacks 9311/tcp, 7127/udp, 8243/udp") for p in found), (
            found
        )


@pytest.mark.root
@needs_lab
def test_live_problems_sees_a_knock_port_deleted_by_hand() -> None:
    config = FIXTURES / "configs" / "minimal.yaml"
    with Lab("lkfw") as lab:
        _cli_apply(lab, config)
        _inside(lab, "nft", "delete", "element", "inet", "logknock", "knocks", "{ tcp . 9311 }")
        assert live_problems(load(config), _runner(lab)) == [
            "set knocks lacks 9311/tcp: render and apply the rules again"
        ]


def _ipt_state(lab: Lab, variant: str) -> list[str]:
    lines = []
    for tool in ("iptables", "ip6tables"):
        lines += [
            f"{tool}: {line}" for line in _inside(lab, f"{tool}-{variant}", "-S").splitlines()
        ]
    return lines


@pytest.mark.root
@needs_lab
@pytest.mark.parametrize("variant", IPTABLES_VARIANTS)
def test_iptables_apply_twice_leaves_one_copy_and_keeps_the_grants(variant: str) -> None:
    config = load(FIXTURES / "configs" / "minimal.yaml")
    with Lab("lkfw") as lab:
        apply(config, f"iptables-{variant}", Options(), _runner(lab))
        _inside(lab, "ipset", "add", "logknock-grants4", "198.18.0.2,tcp:22", "timeout", "3600")
        hook_rule = ["-s", "198.18.0.9/32", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"]
        _inside(lab, f"iptables-{variant}", "-I", "LOGKNOCK", *hook_rule)  # the iptables hook's way
        first = _ipt_state(lab, variant)
        apply(config, f"iptables-{variant}", Options(), _runner(lab))
        assert _ipt_state(lab, variant) == first
        assert sum("-A INPUT " in line for line in first) == 2  # one jump per family
        assert "iptables: -A LOGKNOCK -s 198.18.0.9/32 -p tcp -m tcp --dport 22 -j ACCEPT" in first
        assert "198.18.0.2,tcp:22 timeout" in _inside(lab, "ipset", "save", "logknock-grants4")


# --- behaviour: what packets meet once the rules are loaded ---

BEHAVIOUR_BACKENDS = ["nft", *(f"iptables-{variant}" for variant in IPTABLES_VARIANTS)]
KNOCKS = "sequences:\n  ssh:\n    knock: [7127/udp, 9311/tcp, 8243/udp]\n    open: [2222/tcp]\n"
OTHER_V4 = "198.18.0.3"  # a second client address: not granted, or flooding
OTHER_V6 = "2001:db8:18::3"  # in the client's /64
FAR_V6 = ("2001:db8:19::2", "2001:db8:19::1")  # client and server in another /64


class Bench:
    """A lab with logknock's rules loaded in the server, and listeners there:
    2222/tcp (protected), 8000/tcp and 8001/udp (ordinary services)."""

    def __init__(self, lab: Lab, klog: KernelLog, backend: str, prefix: str, path: Path) -> None:
        self.lab, self.klog, self.backend, self.prefix, self.path = lab, klog, backend, prefix, path

    def load(self, options: Options) -> None:
        apply(load(self.path), self.backend, options, _runner(self.lab))
        self.klog.skip_to_end()

    def probe(self, proto: str, host: object, port: int, source: object = None, n: int = 1) -> str:
        """Run probe.py in the client, from `source` (default: the lab's client address)."""
        lab = self.lab
        source = source or (lab.client_v6 if ":" in str(host) else lab.client_v4)
        argv = [sys.executable, str(PROBE), proto, str(host), str(port), str(source), str(n)]
        return lab.run_in(lab.client_ns, argv).stdout.decode().strip()

    def grant(self, src: str, port: int) -> None:
        if self.backend == "nft":
            name = "grants6" if ":" in src else "grants4"
            _add_element(self.lab, name, f"{src} . tcp . {port} timeout 30s")
        else:
            name = "logknock-grants6" if ":" in src else "logknock-grants4"
            _inside(self.lab, "ipset", "add", name, f"{src},tcp:{port}", "timeout", "30")

    def logged(self, count: int) -> list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
        """(SRC, DPT) of our lines since the last look; waits for `count` at most 5 s."""
        prefix = self.prefix.encode()
        records = self.klog.collect(lambda r: r.partition(b";")[2].startswith(prefix), count, 5)
        self.klog.skip_to_end()
        found = [re.search(rb" SRC=(\S+) .* DPT=(\d+) ", record) for record in records]
        return sorted(
            ((ipaddress.ip_address(m[1].decode()), int(m[2])) for m in found if m), key=str
        )

    def replies(self) -> dict[str, int]:
        """The server's count of TCP resets and ICMP/ICMPv6 port-unreachable errors sent."""
        table = _snmp(_inside(self.lab, "cat", "/proc/net/snmp"))
        snmp6 = _inside(self.lab, "cat", "/proc/net/snmp6").split()
        table.update(zip(snmp6[::2], map(int, snmp6[1::2]), strict=True))
        return {
            "rst": table["TcpOutRsts"],
            "icmp": table["IcmpOutDestUnreachs"],
            "icmp6": table["Icmp6OutDestUnreachs"],
        }


def _snmp(text: str) -> dict[str, int]:
    """/proc/net/snmp: pairs of lines `Tcp: Name ...` / `Tcp: 1 ...` as {"TcpName": 1}."""
    lines = text.splitlines()
    table = {}
    for head, values in zip(lines[::2], lines[1::2], strict=True):
        kind, names = head.split(":")[0], head.split()[1:]
        table.update(
            {kind + name: int(v) for name, v in zip(names, values.split()[1:], strict=True)}
        )
    return table


def _listen(lab: Lab, port: int, proto: str = "tcp") -> subprocess.Popen[bytes]:
    argv = ["ip", "netns", "exec", lab.server_ns, sys.executable, str(PROBE), "listen", proto]
    proc = subprocess.Popen([*argv, str(port)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"listening":
        proc.kill()
        proc.wait()
        raise AssertionError(f"listener on {port} did not start")
    return proc


def _add_addresses(lab: Lab) -> None:
    client = ["ip", "-n", lab.client_ns, "addr", "add"]
    subprocess.run([*client, f"{OTHER_V4}/24", "dev", lab.client_if], check=True)
    for ns, iface, address in (
        (lab.client_ns, lab.client_if, OTHER_V6),
        (lab.client_ns, lab.client_if, FAR_V6[0]),
        (lab.server_ns, lab.server_if, FAR_V6[1]),
    ):
        subprocess.run(
            ["ip", "-n", ns, "addr", "add", f"{address}/64", "dev", iface, "nodad"], check=True
        )


@pytest.fixture(params=BEHAVIOUR_BACKENDS)
def bench(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bench]:
    prefix = f"fw{secrets.token_hex(3)}: "
    path = tmp_path / "logknock.yaml"
    path.write_text(f'prefix: "{prefix}"\n{KNOCKS}')
    with nf_log_all_netns(), Lab("lkfw") as lab, KernelLog() as klog:
        _add_addresses(lab)
        listeners: list[subprocess.Popen[bytes]] = []
        try:
            listeners += [_listen(lab, 2222), _listen(lab, 8000), _listen(lab, 8001, "udp")]
            made = Bench(lab, klog, request.param, prefix, path)
            made.load(Options())
            yield made
        finally:
            for proc in listeners:
                proc.kill()
                proc.wait()
                assert proc.stdout is not None
                proc.stdout.close()


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.root
@needs_lab
def test_a_protected_port_opens_only_for_the_granted_address(bench: Bench) -> None:
    lab = bench.lab
    assert bench.probe("tcp", lab.server_v4, 2222) == "silent"
    assert bench.probe("tcp", lab.server_v6, 2222) == "silent"
    assert bench.probe("tcp", lab.server_v4, 8000) == "connected"  # other services still work
    bench.grant(str(lab.client_v4), 2222)
    bench.grant(str(lab.client_v6), 2222)
    assert bench.probe("tcp", lab.server_v4, 2222) == "connected"
    assert bench.probe("tcp", lab.server_v6, 2222) == "connected"  # neighbour discovery works
    assert bench.probe("tcp", lab.server_v4, 2222, OTHER_V4) == "silent"
    assert bench.probe("tcp", lab.server_v6, 2222, OTHER_V6) == "silent"
    assert bench.logged(0) == []  # protected ports are dropped, not logged


@pytest.mark.root
@needs_lab
def test_knocks_are_logged_with_our_prefix_and_get_no_reply(bench: Bench) -> None:
    lab, before = bench.lab, bench.replies()
    assert bench.probe("udp", lab.server_v4, 7127) == "silent"
    assert bench.probe("tcp", lab.server_v4, 9311) == "silent"
    assert bench.probe("udp", lab.server_v6, 8243) == "silent"
    assert bench.probe("tcp", lab.server_v6, 9311) == "silent"
    assert set(bench.logged(4)) == {
        (lab.client_v4, 7127),
        (lab.client_v4, 9311),
        (lab.client_v6, 8243),
        (lab.client_v6, 9311),
    }
    assert bench.replies() == before


@pytest.mark.root
@needs_lab
def test_closed_ports_are_logged_and_dropped_unless_something_listens(bench: Bench) -> None:
    lab, before = bench.lab, bench.replies()
    assert bench.probe("tcp", lab.server_v4, 5555) == "silent"
    assert bench.probe("udp", lab.server_v6, 5555) == "silent"
    assert bench.probe("tcp", lab.server_v6, 8000) == "connected"
    assert bench.probe("udp", lab.server_v4, 8001) == "silent"  # listens, never answers
    assert set(bench.logged(2)) == {(lab.client_v4, 5555), (lab.client_v6, 5555)}
    assert bench.replies() == before


@pytest.mark.root
@needs_lab
def test_no_log_closed_lets_the_kernel_answer_closed_ports(bench: Bench) -> None:
    """The control for the tests above: a reply, when there is one, is seen and counted."""
    lab = bench.lab
    bench.load(Options(log_closed=False))
    before = bench.replies()
    assert bench.probe("tcp", lab.server_v4, 5555) == "refused"
    assert bench.probe("udp", lab.server_v4, 5555) == "refused"
    assert bench.probe("udp", lab.server_v6, 5555) == "refused"
    assert bench.probe("udp", lab.server_v4, 7127) == "silent"  # knocks stay silent
    assert bench.logged(1) == [(lab.client_v4, 7127)]
    after = bench.replies()
    assert after["rst"] > before["rst"]
    assert after["icmp"] > before["icmp"]
    assert after["icmp6"] > before["icmp6"]


@pytest.mark.root
@needs_lab
def test_a_flood_from_one_source_leaves_the_log_to_the_others(bench: Bench) -> None:
    """1/minute: a global limit would have no line left for the second source."""
    lab = bench.lab
    bench.load(Options(rate=Rate(1, "minute")))
    assert bench.probe("udp", lab.server_v4, 7127, OTHER_V4, 40) == "silent"
    assert bench.probe("udp", lab.server_v4, 7127, lab.client_v4) == "silent"
    assert bench.probe("udp", lab.server_v6, 7127, OTHER_V6, 40) == "silent"
    assert bench.probe("udp", lab.server_v6, 7127, lab.client_v6) == "silent"  # same /64
    assert bench.probe("udp", FAR_V6[1], 7127, FAR_V6[0]) == "silent"
    lines = bench.logged(5)
    flood4 = lines.count((_ip(OTHER_V4), 7127))
    flood6 = lines.count((_ip(OTHER_V6), 7127))
    assert 1 <= flood4 < 40
    assert 1 <= flood6 < 40
    assert lines.count((lab.client_v4, 7127)) == 1
    assert lines.count((_ip(FAR_V6[0]), 7127)) == 1
    assert (lab.client_v6, 7127) not in lines  # its /64 had used up the allowance
