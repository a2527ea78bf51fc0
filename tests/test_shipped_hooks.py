"""The shipped hooks (hooks/*) against the real nft, ipset and iptables.

Each live test gets a fresh namespace lab (the hostile-value tests, which
must change nothing, share one) whose server namespace holds the grant sets
and chains exactly as docs/firewall.md declares them, read from the document
itself. A hook runs there through `ip netns exec NS env -i` with
the environment `logknock.hooks.hook_environment` builds for a decision, plus
the overrides a test gives, and argv `[action]`, as the daemon runs it.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from testpaths import ROOT, is_root

from logknock.hooks import hook_environment, run_hook
from logknock.lab import Lab, wait_until
from logknock.models import Action, Decision

HOOKS = ROOT / "hooks"
CONTRACT = ROOT / "docs" / "firewall.md"
FIREWALL_HOOKS = ("nft-set", "ipset", "iptables")
ALL_HOOKS = (*FIREWALL_HOOKS, "log-only")
NOW = 1_700_000_000.0
OTHER = "198.18.0.3"  # a grant of another address that no test may touch
PORT = 2222
Env = dict[str, str | None]

needs_lab = pytest.mark.skipif(
    not is_root() or shutil.which("ip") is None, reason="needs root and `ip netns`"
)


def live(test: Callable[..., None]) -> Callable[..., None]:
    """A test that runs the hooks in a namespace lab against the real kernel."""
    return pytest.mark.root(needs_lab(test))


def src_of(family: int) -> str:
    return str(Lab.client_v4 if family == 4 else Lab.client_v6)


def environment(action: str, family: int, ports: str, timeout: int) -> dict[str, str]:
    """What the daemon gives a hook for this decision (`hook_environment`)."""
    decision = Decision(
        NOW, Action(action), ipaddress.ip_address(src_of(family)),
        None if action in ("ban", "unban") else "ssh",
        tuple(ports.split()), NOW + timeout if action == "open" else None,
    )  # fmt: skip
    return hook_environment(decision, NOW)


@dataclass(frozen=True, slots=True)
class Result:
    code: int
    stderr: str


def run(
    lab: Lab,
    hook: str | Path,
    action: str = "open",
    family: int = 4,
    *,
    ports: str = "22/tcp",
    timeout: int = 30,
    env: Env | None = None,
    argv: list[str] | None = None,
) -> Result:
    """Run `hook` (a name in hooks/ or a path) in the server namespace as the daemon
    would, with `env` overriding single variables (None: unset)."""
    full: Env = {**environment(action, family, ports, timeout), **(env or {})}
    pairs = [f"{key}={value}" for key, value in full.items() if value is not None]
    command = ["env", "-i", *pairs, str(HOOKS / hook), *([action] if argv is None else argv)]
    proc = lab.run_in(lab.server_ns, command, check=False)
    return Result(proc.returncode, proc.stderr.decode(errors="replace"))


# --- the firewall the contract declares, and what is granted in it ---


def contract_nft_sets() -> str:
    sets = re.findall(r"^set grants[46] \{.*\}$", CONTRACT.read_text(), re.MULTILINE)
    assert len(sets) == 2, "docs/firewall.md declares set grants4 and set grants6"
    return "\n".join(sets)


def contract_ipsets() -> list[list[str]]:
    found = re.findall(r"`(logknock-grants[46])` \(`(hash:[^`]+)`\)", CONTRACT.read_text())
    assert len(found) == 2, "docs/firewall.md declares logknock-grants4 and logknock-grants6"
    return [[name, *spec.split()] for name, spec in found]


def inside(lab: Lab, *argv: str, stdin: str | None = None) -> str:
    data = None if stdin is None else stdin.encode()
    return lab.run_in(lab.server_ns, argv, input=data).stdout.decode()


def load_nft(lab: Lab, chain: str = "") -> None:
    """(Re)declare `table inet logknock` with the contract's sets and `chain`."""
    table = f"table inet logknock {{\n{contract_nft_sets()}\n{chain}}}\n"
    replace = "table inet logknock {}\ndelete table inet logknock\n"
    inside(lab, "nft", "-f", "-", stdin=replace + table)


def load_contract(lab: Lab) -> None:
    load_nft(lab)
    for spec in contract_ipsets():
        inside(lab, "ipset", "create", *spec)
    inside(lab, "iptables", "-N", "LOGKNOCK")
    inside(lab, "ip6tables", "-N", "LOGKNOCK6")


def nft_elements(lab: Lab, family: int) -> dict[tuple[str, str, int], dict[str, int]]:
    """grantsN's elements: (src, proto, port) -> {"timeout": s, "expires": s}."""
    listing = json.loads(
        inside(lab, "nft", "-j", "list", "set", "inet", "logknock", f"grants{family}")
    )
    found = {}
    for item in listing["nftables"]:
        for entry in item.get("set", {}).get("elem", []):
            src, proto, port = entry["elem"]["val"]["concat"]
            found[(src, proto, port)] = {k: entry["elem"][k] for k in ("timeout", "expires")}
    return found


def ipset_entries(lab: Lab, family: int) -> dict[tuple[str, str, int], int]:
    """logknock-grantsN's entries: (src, proto, port) -> seconds left."""
    found = {}
    for line in inside(lab, "ipset", "save", f"logknock-grants{family}").splitlines():
        words = line.split()
        if words[0] == "add":
            src, _, proto_port = words[2].rpartition(",")
            proto, _, port = proto_port.partition(":")
            found[(src, proto, int(port))] = int(words[words.index("timeout") + 1])
    return found


def ipt_rules(lab: Lab, family: int) -> list[list[str]]:
    tool, chain = ("iptables", "LOGKNOCK") if family == 4 else ("ip6tables", "LOGKNOCK6")
    rules = [shlex.split(line) for line in inside(lab, tool, "-S", chain).splitlines()]
    return [rule for rule in rules if rule[0] == "-A"]


def ipt_grants(lab: Lab, family: int) -> list[tuple[str, str, int]]:
    """Every ACCEPT rule for an address as (src, proto, port), duplicates kept."""
    found = []
    for rule in ipt_rules(lab, family):
        if "-s" in rule:
            src = rule[rule.index("-s") + 1].split("/")[0]
            found.append((src, rule[rule.index("-p") + 1], int(rule[rule.index("--dport") + 1])))
    return found


def granted(lab: Lab, hook: str, family: int) -> set[tuple[str, str, int]]:
    if hook == "nft-set":
        return set(nft_elements(lab, family))
    if hook == "ipset":
        return set(ipset_entries(lab, family))
    return set(ipt_grants(lab, family))


def snapshot(lab: Lab) -> list[object]:
    """All grant state in every back end, without the seconds that tick away."""
    state: list[object] = []
    for family in (4, 6):
        nft = nft_elements(lab, family)
        state += [sorted((key, value["timeout"]) for key, value in nft.items())]
        state += [sorted(ipset_entries(lab, family)), ipt_rules(lab, family)]
    return state


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab("lkhook") as made:
        load_contract(made)
        yield made


def add_other_grants(lab: Lab) -> None:
    """A grant for OTHER in every back end, for the tests to leave alone."""
    element = f"{{ {OTHER} . tcp . 22 timeout 1h }}"
    inside(lab, "nft", "add", "element", "inet", "logknock", "grants4", element)
    inside(lab, "ipset", "add", "logknock-grants4", f"{OTHER},tcp:22", "timeout", "3600")
    rule = ["-s", OTHER, "-p", "tcp", "--dport", "22", "-m", "comment", "--comment"]
    inside(lab, "iptables", "-I", "LOGKNOCK", *rule, "logknock ssh until 1", "-j", "ACCEPT")


@pytest.fixture
def busy_lab(lab: Lab) -> Lab:
    add_other_grants(lab)
    return lab


@pytest.fixture(scope="module")
def shared_busy_lab() -> Iterator[Lab]:
    """One busy lab for tests that must change nothing (each one checks it did not)."""
    with Lab("lkhook") as made:
        load_contract(made)
        add_other_grants(made)
        yield made


# --- every firewall hook: open, close, idempotency, the firewall missing ---


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("hook", FIREWALL_HOOKS)
@live
def test_open_grants_every_port_and_close_takes_them_back(
    busy_lab: Lab, hook: str, family: int
) -> None:
    src, before = src_of(family), snapshot(busy_lab)
    assert run(busy_lab, hook, "close", family, ports="22/tcp").code == 0  # never opened: fine
    assert snapshot(busy_lab) == before
    result = run(busy_lab, hook, "open", family, ports="22/tcp 443/tcp 53/udp")
    assert result.code == 0, result
    mine = {(src, "tcp", 22), (src, "tcp", 443), (src, "udp", 53)}
    assert granted(busy_lab, hook, family) - {(OTHER, "tcp", 22)} == mine
    for _ in range(2):  # a second close finds nothing and is fine too
        result = run(busy_lab, hook, "close", family, ports="22/tcp 443/tcp 53/udp")
        assert result.code == 0, result
        assert snapshot(busy_lab) == before


@pytest.mark.parametrize("hook", FIREWALL_HOOKS)
@live
def test_open_twice_leaves_one_grant_per_port(lab: Lab, hook: str) -> None:
    for _ in range(2):
        assert run(lab, hook, ports="22/tcp 53/udp").code == 0
    if hook == "iptables":  # the only back end that could hold duplicates
        assert sorted(ipt_grants(lab, 4)) == [(src_of(4), "tcp", 22), (src_of(4), "udp", 53)]
    assert len(granted(lab, hook, 4)) == 2


UNLOAD = {
    "nft-set": [["nft", "delete", "table", "inet", "logknock"]],
    "ipset": [["ipset", "destroy", "logknock-grants4"], ["ipset", "destroy", "logknock-grants6"]],
    "iptables": [["iptables", "-X", "LOGKNOCK"], ["ip6tables", "-X", "LOGKNOCK6"]],
}


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("hook", FIREWALL_HOOKS)
@live
def test_without_the_firewall_loaded_open_fails_and_close_is_done(
    lab: Lab, hook: str, family: int
) -> None:
    for argv in UNLOAD[hook]:
        inside(lab, *argv)
    opened = run(lab, hook, "open", family)
    assert opened.code == 1 and f"could not open 22/tcp for {src_of(family)}" in opened.stderr
    closed = run(lab, hook, "close", family)
    assert closed.code == 0 and "nothing is granted: close done" in closed.stderr


@pytest.mark.parametrize("action", ["ban", "unban"])
@pytest.mark.parametrize("hook", FIREWALL_HOOKS)
@live
def test_ban_and_unban_change_nothing_and_say_so(busy_lab: Lab, hook: str, action: str) -> None:
    before = snapshot(busy_lab)
    result = run(busy_lab, hook, action, ports="")
    assert result.code == 0 and f"{action} of {src_of(4)} skipped" in result.stderr
    assert snapshot(busy_lab) == before


# --- what each back end keeps: timeouts, their refresh, comments ---


@pytest.mark.parametrize("family", [4, 6])
@live
def test_nft_elements_carry_the_timeout(lab: Lab, family: int) -> None:
    assert run(lab, "nft-set", "open", family, ports="22/tcp 53/udp", timeout=90).code == 0
    elements = nft_elements(lab, family)
    assert set(elements) == {(src_of(family), "tcp", 22), (src_of(family), "udp", 53)}
    for element in elements.values():
        assert element["timeout"] == 90 and 0 < element["expires"] <= 90


def seconds_left(lab: Lab, hook: str) -> int:
    key = (src_of(4), "tcp", 22)
    return nft_elements(lab, 4)[key]["expires"] if hook == "nft-set" else ipset_entries(lab, 4)[key]


@pytest.mark.slow
@pytest.mark.parametrize("hook", ["nft-set", "ipset"])
@live
def test_a_second_open_restarts_the_timeout(lab: Lab, hook: str) -> None:
    """`nft add element` alone would leave the old expiry: the hook must not."""
    assert run(lab, hook, timeout=30).code == 0
    wait_until(lambda: seconds_left(lab, hook) <= 28, "the grant to age two seconds")
    aged = seconds_left(lab, hook)
    assert run(lab, hook, timeout=30).code == 0
    assert seconds_left(lab, hook) > aged and seconds_left(lab, hook) >= 28


def comments(lab: Lab, family: int) -> list[str]:
    return [rule[rule.index("--comment") + 1] for rule in ipt_rules(lab, family) if "-s" in rule]


@pytest.mark.parametrize("family", [4, 6])
@live
def test_iptables_rules_say_whose_grant_and_until_when(lab: Lab, family: int) -> None:
    expires = {"LOGKNOCK_EXPIRES": "1700000030"}
    assert run(lab, "iptables", "open", family, ports="22/tcp 53/udp", env=expires).code == 0
    assert comments(lab, family) == ["logknock ssh until 1700000030"] * 2
    later = {"LOGKNOCK_EXPIRES": "1700000090"}
    assert run(lab, "iptables", "open", family, ports="22/tcp 53/udp", env=later).code == 0
    assert comments(lab, family) == ["logknock ssh until 1700000090"] * 2


@live
def test_iptables_close_removes_every_duplicate(busy_lab: Lab) -> None:
    src, before = src_of(4), snapshot(busy_lab)
    rule = ["-s", src, "-p", "tcp", "--dport", "22", "-m", "comment", "--comment"]
    for command in ("-I", "-A"):  # duplicates at both ends, under two comments
        for comment in ("logknock ssh until 5", "logknock web until 9"):
            inside(busy_lab, "iptables", command, "LOGKNOCK", *rule, comment, "-j", "ACCEPT")
    assert run(busy_lab, "iptables").code == 0
    assert ipt_grants(busy_lab, 4).count((src, "tcp", 22)) == 1  # open replaced them all
    assert run(busy_lab, "iptables", "close").code == 0
    assert snapshot(busy_lab) == before


# --- hostile or missing values: refused before anything changes ---

EVERY = frozenset(ALL_HOOKS)
NAMED = frozenset({"iptables", "log-only"})  # the hooks that use the sequence and expiry
TIMED = frozenset({"nft-set", "ipset", "log-only"})  # the hooks that use the timeout
# (case id, environment overrides (None: unset), argv (None: [action]), hooks it applies to)
HOSTILE: list[tuple[str, Env, list[str] | None, frozenset[str]]] = [
    ("src-command", {"LOGKNOCK_SRC": "198.18.0.7; rm -rf /"}, None, EVERY),
    ("src-substitution", {"LOGKNOCK_SRC": "$(id)"}, None, EVERY),
    ("src-nft-syntax", {"LOGKNOCK_SRC": "1.2.3.4 . tcp . 1"}, None, EVERY),
    ("src-newline", {"LOGKNOCK_SRC": "198.18.0.7\n198.18.0.8"}, None, EVERY),
    ("src-octet", {"LOGKNOCK_SRC": "198.18.0.256"}, None, EVERY),
    ("src-leading-zero", {"LOGKNOCK_SRC": "198.18.0.07"}, None, EVERY),
    ("src-three-parts", {"LOGKNOCK_SRC": "198.18.7"}, None, EVERY),
    ("src-trailing-dot", {"LOGKNOCK_SRC": "198.18.0.7."}, None, EVERY),
    ("src-option", {"LOGKNOCK_SRC": "-198.18.0.7"}, None, EVERY),
    ("src-empty", {"LOGKNOCK_SRC": ""}, None, EVERY),
    ("src-unset", {"LOGKNOCK_SRC": None}, None, EVERY),
    ("src6-command", {"LOGKNOCK_SRC": "::1;id", "LOGKNOCK_FAMILY": "6"}, None, EVERY),
    ("src6-substitution", {"LOGKNOCK_SRC": "::$(x)", "LOGKNOCK_FAMILY": "6"}, None, EVERY),
    ("src6-option", {"LOGKNOCK_SRC": "-::1", "LOGKNOCK_FAMILY": "6"}, None, EVERY),
    ("src6-bad-tail", {"LOGKNOCK_SRC": "::ffff:1.2.3", "LOGKNOCK_FAMILY": "6"}, None, EVERY),
    ("src6-colon", {"LOGKNOCK_SRC": ":", "LOGKNOCK_FAMILY": "6"}, None, EVERY),
    ("src-zone", {"LOGKNOCK_SRC": "::1%eth0", "LOGKNOCK_FAMILY": "6"}, None, EVERY),
    ("src-two-gaps", {"LOGKNOCK_SRC": "2001:db8::1::2", "LOGKNOCK_FAMILY": "6"}, None, EVERY),
    ("src-long-group", {"LOGKNOCK_SRC": "2001:db8::12345", "LOGKNOCK_FAMILY": "6"}, None, EVERY),
    ("src-nine-groups", {"LOGKNOCK_SRC": "1:2:3:4:5:6:7:8:9", "LOGKNOCK_FAMILY": "6"}, None, EVERY),
    ("family-mismatch-6", {"LOGKNOCK_SRC": "2001:db8::7"}, None, EVERY),
    ("family-mismatch-4", {"LOGKNOCK_FAMILY": "6"}, None, EVERY),
    ("family-odd", {"LOGKNOCK_FAMILY": "4 "}, None, EVERY),
    ("family-unset", {"LOGKNOCK_FAMILY": None}, None, EVERY),
    ("ports-command", {"LOGKNOCK_PORTS": "22/tcp;x"}, None, EVERY),
    ("ports-zero", {"LOGKNOCK_PORTS": "0/tcp"}, None, EVERY),
    ("ports-too-big", {"LOGKNOCK_PORTS": "65536/udp"}, None, EVERY),
    ("ports-huge", {"LOGKNOCK_PORTS": "99999999999999999999/tcp"}, None, EVERY),
    ("ports-sctp", {"LOGKNOCK_PORTS": "22/sctp"}, None, EVERY),
    ("ports-negative", {"LOGKNOCK_PORTS": "-1/tcp"}, None, EVERY),
    ("ports-octal", {"LOGKNOCK_PORTS": "022/tcp"}, None, EVERY),
    ("ports-bare", {"LOGKNOCK_PORTS": "22"}, None, EVERY),
    ("ports-glob", {"LOGKNOCK_PORTS": "*/tcp"}, None, EVERY),
    ("ports-double", {"LOGKNOCK_PORTS": "22/tcp/tcp"}, None, EVERY),
    ("ports-tab", {"LOGKNOCK_PORTS": "22/tcp\t443/tcp"}, None, EVERY),
    ("ports-two-spaces", {"LOGKNOCK_PORTS": "22/tcp  443/tcp"}, None, EVERY),
    ("ports-one-bad", {"LOGKNOCK_PORTS": "22/tcp 443/tcpx"}, None, EVERY),
    ("ports-empty", {"LOGKNOCK_PORTS": ""}, None, EVERY),
    ("ports-unset-close", {"LOGKNOCK_ACTION": "close", "LOGKNOCK_PORTS": None}, ["close"], EVERY),
    ("timeout-float", {"LOGKNOCK_TIMEOUT": "1e9"}, None, TIMED),
    ("timeout-empty", {"LOGKNOCK_TIMEOUT": ""}, None, TIMED),
    ("timeout-unset", {"LOGKNOCK_TIMEOUT": None}, None, TIMED),
    ("timeout-zero", {"LOGKNOCK_TIMEOUT": "0"}, None, TIMED),
    ("timeout-negative", {"LOGKNOCK_TIMEOUT": "-5"}, None, TIMED),
    ("timeout-unit", {"LOGKNOCK_TIMEOUT": "30s"}, None, TIMED),
    ("timeout-octal", {"LOGKNOCK_TIMEOUT": "030"}, None, TIMED),
    ("timeout-over-30-days", {"LOGKNOCK_TIMEOUT": "2592001"}, None, TIMED),
    ("action-differs", {"LOGKNOCK_ACTION": "close"}, None, EVERY),
    ("action-unknown", {"LOGKNOCK_ACTION": "flush"}, ["flush"], EVERY),
    ("action-unset", {"LOGKNOCK_ACTION": None}, None, EVERY),
    ("argv-missing", {}, [], EVERY),
    ("argv-extra", {}, ["open", "--now"], EVERY),
    ("ban-hostile-src", {"LOGKNOCK_ACTION": "ban", "LOGKNOCK_SRC": "$(id)"}, ["ban"], EVERY),
    ("sequence-space", {"LOGKNOCK_SEQUENCE": "ssh x"}, None, NAMED),
    ("sequence-quote", {"LOGKNOCK_SEQUENCE": 'ssh" -j ACCEPT'}, None, NAMED),
    ("sequence-option", {"LOGKNOCK_SEQUENCE": "-j"}, None, NAMED),
    ("sequence-long", {"LOGKNOCK_SEQUENCE": "s" * 65}, None, NAMED),
    ("sequence-unset", {"LOGKNOCK_SEQUENCE": None}, None, NAMED),
    ("expires-text", {"LOGKNOCK_EXPIRES": "soon"}, None, NAMED),
    ("expires-command", {"LOGKNOCK_EXPIRES": "1700000030;x"}, None, NAMED),
    ("expires-unset", {"LOGKNOCK_EXPIRES": None}, None, NAMED),
]


@pytest.mark.parametrize(
    ("hook", "env", "argv"),
    [
        pytest.param(hook, env, argv, id=f"{hook}-{name}")
        for name, env, argv, hooks in HOSTILE
        for hook in ALL_HOOKS
        if hook in hooks
    ],
)
@live
def test_hostile_or_missing_values_are_refused(
    shared_busy_lab: Lab, hook: str, env: Env, argv: list[str] | None
) -> None:
    busy_lab = shared_busy_lab
    before = snapshot(busy_lab)
    result = run(busy_lab, hook, "open", 4, ports="22/tcp 443/tcp", env=env, argv=argv)
    assert result.code == 2, result
    assert result.stderr.startswith(f"logknock hook {hook}: ")
    assert result.stderr.count("\n") == 1  # one line: a value cannot forge log lines
    assert snapshot(busy_lab) == before


# --- how the hooks are written ---

BLOCK = re.compile(r"^# ---- checks:.*?^# ---- end of checks ----$", re.MULTILINE | re.DOTALL)


def hook_text(hook: str) -> str:
    return (HOOKS / hook).read_text()


@pytest.mark.parametrize("hook", ALL_HOOKS)
def test_hook_is_strict_posix_sh(hook: str) -> None:
    text = hook_text(hook)
    assert text.startswith("#!/bin/sh\n") and "\nset -euf\n" in text
    subprocess.run(["dash", "-n", str(HOOKS / hook)], check=True)
    code = [re.sub(r"(^|\s)#\s.*", "", line) for line in text.splitlines()[1:]]
    for line in code:  # no command is ever built from text
        assert not re.search(r"\beval\b|\bsh -c\b|`|\bsource\b|^\s*\. ", line), line


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("hook", ALL_HOOKS)
def test_hook_passes_shellcheck(hook: str) -> None:
    argv = ["shellcheck", "-s", "sh", str(HOOKS / hook)]
    proc = subprocess.run(argv, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stdout.decode()


def test_every_hook_checks_its_environment_with_the_same_code() -> None:
    blocks = {hook: BLOCK.findall(hook_text(hook)) for hook in ALL_HOOKS}
    assert all(len(found) == 1 for found in blocks.values()), blocks.keys()
    assert len({found[0] for found in blocks.values()}) == 1


@pytest.mark.parametrize("hook", ALL_HOOKS)
def test_hook_file_is_executable_and_writable_only_by_its_owner(hook: str) -> None:
    mode = (HOOKS / hook).stat().st_mode
    assert mode & 0o111 == 0o111 and mode & 0o022 == 0


def test_readme_names_every_variable_the_daemon_sets() -> None:
    readme = (HOOKS / "README.md").read_text()
    for name in environment("open", 4, "22/tcp", 30):
        if name.startswith("LOGKNOCK_"):
            assert f"`{name}`" in readme, name
    for hook in ALL_HOOKS:
        assert f"`{hook}`" in readme, hook


def readme_example() -> str:
    found = re.findall(r"^```sh\n(.*?)^```$", (HOOKS / "README.md").read_text(), re.M | re.S)
    assert len(found) == 1, "hooks/README.md has one sh example"
    return str(found[0])


def knocked4(lab: Lab) -> list[object]:
    listing = json.loads(inside(lab, "nft", "-j", "list", "set", "inet", "filter", "knocked4"))
    return [elem for item in listing["nftables"] for elem in item.get("set", {}).get("elem", [])]


@live
def test_readme_example_hook_keeps_the_contract(lab: Lab, tmp_path: Path) -> None:
    hook = tmp_path / "knocked4"
    hook.write_text(readme_example())
    hook.chmod(0o755)
    declare = "table inet filter { set knocked4 { type ipv4_addr; flags timeout; }; }"
    inside(lab, "nft", "-f", "-", stdin=declare)
    for _ in range(2):
        assert run(lab, hook, "open").code == 0
        assert [elem["elem"]["val"] for elem in knocked4(lab)] == [src_of(4)]  # type: ignore[index]
    for _ in range(2):
        assert run(lab, hook, "close").code == 0
        assert knocked4(lab) == []
    assert run(lab, hook, "ban", ports="").code == 0
    assert run(lab, hook, "open", 6).code == 2
    assert run(lab, hook, env={"LOGKNOCK_SRC": "$(id)"}).code == 2


@pytest.mark.parametrize("action", ["open", "close", "ban"])
def test_log_only_through_the_daemons_runner(action: str) -> None:
    """The real runner (sh, argv, clean environment) with the one hook safe on this host."""
    ports = () if action == "ban" else ("22/tcp", "443/tcp")
    sequence = None if action == "ban" else "ssh"
    expires = NOW + 30 if action == "open" else None
    decision = Decision(NOW, Action(action), Lab.client_v6, sequence, ports, expires)
    result = run_hook(HOOKS / "log-only", decision, NOW, timeout=10)
    assert result.ok, result
    wanted = {
        "open": f"would open 22/tcp 443/tcp for {Lab.client_v6} (sequence ssh) for 30s, until",
        "close": f"would close 22/tcp 443/tcp for {Lab.client_v6} (sequence ssh)",
        "ban": f"would ban {Lab.client_v6}",
    }
    assert wanted[action] in result.output


# --- the real thing: a client's connection follows the grant ---

LISTEN = """
import socket, sys
with socket.socket(socket.AF_INET6) as sock:
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", int(sys.argv[1])))
    sock.listen(16)
    print("ready", flush=True)
    while True:
        sock.accept()[0].close()
"""

CONNECT = """
import errno, socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
with socket.socket(family, socket.SOCK_STREAM) as sock:
    sock.settimeout(10)
    try:
        sock.connect((sys.argv[1], int(sys.argv[2])))
        print("connected")
    except OSError as exc:
        print(errno.errorcode.get(exc.errno or 0, str(exc)))
"""

# The contract's input chain, cut to what a grant needs. The test rejects with a
# TCP reset where the contract drops, so a closed port answers at once.
NFT_CHAIN = f"""chain input {{
    type filter hook input priority filter - 10; policy accept;
    ct state established,related accept
    iif lo accept
    ip saddr . meta l4proto . th dport @grants4 accept
    ip6 saddr . meta l4proto . th dport @grants6 accept
    tcp dport {PORT} reject with tcp reset
}}
"""


def guard_port(lab: Lab, hook: str) -> None:
    if hook == "nft-set":
        load_nft(lab, NFT_CHAIN)
        return
    for tool, chain, grants in (("iptables", "LOGKNOCK", "logknock-grants4"),
                                ("ip6tables", "LOGKNOCK6", "logknock-grants6")):  # fmt: skip
        inside(lab, tool, "-A", "INPUT", "-j", chain)
        inside(
            lab, tool, "-A", chain, "-m", "set", "--match-set", grants, "src,dst", "-j", "ACCEPT"
        )
        inside(lab, tool, "-A", chain, "-p", "tcp", "--dport", str(PORT),
               "-j", "REJECT", "--reject-with", "tcp-reset")  # fmt: skip


@contextmanager
def listening(lab: Lab) -> Iterator[None]:
    argv = ["ip", "netns", "exec", lab.server_ns, sys.executable, "-c", LISTEN, str(PORT)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
            yield
        finally:
            proc.kill()


def connect(lab: Lab, family: int) -> str:
    server = str(lab.server_v4 if family == 4 else lab.server_v6)
    argv = [sys.executable, "-c", CONNECT, server, str(PORT)]
    return lab.run_in(lab.client_ns, argv).stdout.decode().strip()


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("hook", FIREWALL_HOOKS)
@live
def test_open_lets_the_client_in_and_close_shuts_it_out(lab: Lab, hook: str, family: int) -> None:
    guard_port(lab, hook)
    with listening(lab):
        assert connect(lab, family) == "ECONNREFUSED"
        assert run(lab, hook, "open", family, ports=f"{PORT}/tcp 53/udp").code == 0
        assert connect(lab, family) == "connected"
        assert run(lab, hook, "close", family, ports=f"{PORT}/tcp 53/udp").code == 0
        assert connect(lab, family) == "ECONNREFUSED"


CONNECT_UNTIL = """
import json, os, socket, sys
counts = {"connected": 0, "failed": 0}
while not os.path.exists(sys.argv[3]):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        try:
            sock.connect((sys.argv[1], int(sys.argv[2])))
            counts["connected"] += 1
        except OSError:
            counts["failed"] += 1
    if sum(counts.values()) == 1:
        print("started", flush=True)
print(json.dumps(counts), flush=True)
"""


@live
@pytest.mark.slow
@pytest.mark.parametrize("hook", FIREWALL_HOOKS)
def test_a_refresh_never_shuts_the_port_even_for_a_moment(
    lab: Lab, hook: str, tmp_path: Path
) -> None:
    """A client connects over and over while the grant is opened again and again.

    (Deleting and adding the element in two nft commands fails hundreds of
    these connections.)"""
    guard_port(lab, hook)
    done, ports = tmp_path / "done", f"{PORT}/tcp"
    argv = [sys.executable, "-c", CONNECT_UNTIL, str(lab.server_v4), str(PORT), str(done)]
    with listening(lab):
        assert run(lab, hook, ports=ports).code == 0
        netns = ["ip", "netns", "exec", lab.client_ns]
        with subprocess.Popen([*netns, *argv], stdout=subprocess.PIPE) as client:
            assert client.stdout is not None and client.stdout.readline() == b"started\n"
            try:
                for n in range(30):  # iptables: a new expiry each time, so a new rule
                    again = {"LOGKNOCK_EXPIRES": str(int(NOW) + n)}
                    assert run(lab, hook, ports=ports, env=again).code == 0
            finally:
                done.touch()
            counts = json.loads(client.communicate(timeout=30)[0])
    assert counts["failed"] == 0 and counts["connected"] > 1
