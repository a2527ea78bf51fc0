"""`logknock knock`: steps, sending, the client configuration, one-time claims,
and what the server's kernel logs for our client and for knockd's `knock`,
netcat and bash (the root tests, in a namespace lab)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from logknock import cmd_knock
from logknock.client import (
    MAX_PAYLOAD,
    Claim,
    Target,
    claim_one_time,
    parse_cli_step,
    read_payload,
    resolve,
    send_knock,
    send_sequence,
)
from logknock.client_config import ClientSequence, Host, load_client
from logknock.errors import ConfigError, UsageError
from logknock.lab import KernelLog, Lab, nf_log_all_netns
from logknock.matcher import Matcher
from logknock.models import Event, Knock
from logknock.onetime import parse_one_time
from logknock.packs import load_pack
from logknock.schema import Config, PortSpec, Sequence, Step, Totp
from logknock.totp import counter_at, totp_ports
from logknock.tracker import Tracker

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = Target("127.0.0.1", socket.AF_INET, ("127.0.0.1", 0))
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
SECRET_B32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # "12345678901234567890"


# --- steps on the command line: a case is a line ------------------------------------------

CLI_STEPS = [
    ("7000/udp", Step(7000, "udp")),
    ("7000/UDP", Step(7000, "udp")),
    ("7000:udp", Step(7000, "udp")),  # knockd's spelling
    ("7000", Step(7000, "tcp")),  # knockd's default protocol
    ("9000/tcp:syn,!ack", Step(9000, "tcp", frozenset({"SYN"}), frozenset({"ACK"}))),
    ("9000/tcp:ack", "a TCP knock is a plain SYN"),
    ("9000/tcp:!syn", "a TCP knock is a plain SYN"),
    ("70000/udp", "out of range"),
    ("7000/icmp", "unknown protocol"),
    ("x/udp", "not a port number"),
    ("7000:", "name the protocol"),
]


@pytest.mark.parametrize(("word", "expected"), CLI_STEPS)
def test_cli_steps(word: str, expected: Step | str) -> None:
    if isinstance(expected, Step):
        assert parse_cli_step(word) == expected
    else:
        with pytest.raises(ValueError, match=expected):
            parse_cli_step(word)


# --- sending --------------------------------------------------------------------------------

STEPS = (Step(7000, "udp"), Step(8000, "tcp"), Step(9000, "udp"))


def test_knocks_go_in_order_with_the_delay_between_them_not_after() -> None:
    events: list[object] = []
    send_sequence(
        LOOPBACK,
        STEPS,
        delay=0.25,
        payload=b"x",
        sleep=events.append,
        send=lambda target, step, payload: events.append((str(step), payload)),
    )
    assert events == [("7000/udp", b"x"), 0.25, ("8000/tcp", b"x"), 0.25, ("9000/udp", b"x")]


def test_a_failed_knock_is_reported_and_the_others_still_go() -> None:
    def send(target: Target, step: Step, payload: bytes) -> None:
        if step.port == 8000:
            raise OSError(errno.ENETUNREACH, os.strerror(errno.ENETUNREACH))

    seen: list[str] = []
    sent = send_sequence(LOOPBACK, STEPS, sleep=lambda s: None, send=send, report=seen.append)
    assert [s.error for s in sent] == [None, os.strerror(errno.ENETUNREACH), None]
    assert seen == list(sent)


@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(256)) * 5])
def test_a_udp_knock_is_one_datagram_carrying_the_payload(payload: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        send_knock(LOOPBACK, Step(receiver.getsockname()[1], "udp"), payload)
        assert receiver.recv(4096) == payload
        receiver.setblocking(False)
        with pytest.raises(BlockingIOError):
            receiver.recv(4096)


def test_resolve_takes_the_address_and_family_of_a_literal() -> None:
    target = resolve("127.0.0.1")
    assert (target.family, target.address, target.at_port(7000)) == (
        socket.AF_INET,
        "127.0.0.1",
        ("127.0.0.1", 7000),
    )


@pytest.mark.parametrize(("host", "family"), [("127.0.0.1", 6), ("2001:db8::1", 4)])
def test_a_literal_of_the_other_family_is_a_usage_error(host: str, family: int) -> None:
    with pytest.raises(UsageError, match=f"but -{family} asks"):
        resolve(host, family)


# --- payloads -----------------------------------------------------------------------------


def test_payload_text_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "faux.bin").write_bytes(b"\x00\x01faux")
    assert read_payload("héllo") == "héllo".encode()
    assert read_payload("@~/faux.bin") == b"\x00\x01faux"
    (tmp_path / "full.bin").write_bytes(b"x" * MAX_PAYLOAD)
    assert len(read_payload(f"@{tmp_path}/full.bin")) == MAX_PAYLOAD


@pytest.mark.parametrize(
    ("spec", "message"),
    [("x" * (MAX_PAYLOAD + 1), "1401 bytes"), ("@big.bin", "1401 bytes"), ("@no.bin", "cannot")],
)
def test_payload_problems_are_usage_errors(
    spec: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "big.bin").write_bytes(b"x" * 5000)
    with pytest.raises(UsageError, match=message):
        read_payload(spec)


# --- one-time claims ----------------------------------------------------------------------

ONE_TIME = """\
# the vault
7000:udp,8000:tcp 9000

1234:udp 2345:udp 3456:tcp  # the second
"""


def _one_time(tmp_path: Path, text: str, name: str = "vault.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_claims_take_the_lines_in_order_and_comment_them_out(tmp_path: Path) -> None:
    path = _one_time(tmp_path, ONE_TIME)
    first = claim_one_time(str(path), now=0)
    assert first == Claim((Step(7000, "udp"), Step(8000, "tcp"), Step(9000, "tcp")), 2)
    assert path.read_text().splitlines()[1] == "# used 1970-01-01T00:00:00Z: 7000:udp,8000:tcp 9000"
    second = claim_one_time(str(path), now=60)
    assert second.line == 4
    assert second.steps == (Step(1234, "udp"), Step(2345, "udp"), Step(3456, "tcp"))
    assert parse_one_time(path.read_text(), str(path)) == ()  # the server's reader: none left
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="every one-time sequence has been used"):
        claim_one_time(str(path))


def test_a_line_equal_to_a_used_one_is_skipped(tmp_path: Path) -> None:
    path = _one_time(tmp_path, "1:udp 2:udp\n1/udp,2/udp\n3:udp 4:udp\n")
    assert [claim_one_time(str(path)).line for _ in range(2)] == [1, 3]


def test_a_bad_step_is_reported_with_line_and_column_and_nothing_is_taken(tmp_path: Path) -> None:
    path = _one_time(tmp_path, "7000:udp\n8000:udp 9000:icmp\n")
    with pytest.raises(ConfigError, match=f"{path}:2:10: error: unknown protocol 'icmp'"):
        claim_one_time(str(path))
    assert path.read_text() == "7000:udp\n8000:udp 9000:icmp\n"


def test_a_symlink_is_followed(tmp_path: Path) -> None:
    real = _one_time(tmp_path, "7000:udp\n")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    claim_one_time(str(link), now=0)
    assert link.is_symlink()
    assert real.read_text().startswith("# used ")


CLAIMER = """
import sys, time
from logknock.client import claim_one_time
start = float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
for _ in range(int(sys.argv[2])):
    print(claim_one_time(sys.argv[1]).line, flush=True)
"""


def test_clients_claiming_at_the_same_time_never_take_the_same_line(tmp_path: Path) -> None:
    path = _one_time(tmp_path, "".join(f"{port}:udp\n" for port in range(1000, 1040)))
    start = str(time.time() + 1.0)  # all processes imported and waiting: they claim together
    argv = [sys.executable, "-c", CLAIMER, str(path), "5", start]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=ROOT) for _ in range(8)]
    lines = [int(n) for proc in procs for n in proc.communicate(timeout=60)[0].split()]
    assert [proc.returncode for proc in procs] == [0] * 8
    assert sorted(lines) == list(range(1, 41))
    assert parse_one_time(path.read_text(), str(path)) == ()


# --- the client configuration -------------------------------------------------------------


def _files(tmp_path: Path) -> None:
    (tmp_path / "totp.key").write_text(SECRET_B32 + "\n")
    (tmp_path / "vault.txt").write_text("7000:udp 8000:udp\n")
    (tmp_path / "faux.bin").write_bytes(b"\x01faux")


GOOD = """\
hosts:
  server: {address: server.example, family: 4}
  lab: 198.18.0.1
sequences:
  ssh: {host: server, knock: [7000/udp, 8000/udp, "9000/tcp:syn,!ack"], delay: 200ms}
  rolling:
    host: lab
    totp: {secret_file: ~/totp.key, period: 30s, steps: 3, ports: 20000-29999, proto: udp}
  vault: {host: server, one_time: vault.txt, payload_file: faux.bin}
  web: {host: lab, knock: [80/tcp], payload: hi}
"""


def test_a_good_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    _files(tmp_path)
    (tmp_path / "client.yaml").write_text(GOOD)
    config = load_client(str(tmp_path / "client.yaml"))
    server, lab = Host("server", "server.example", 4), Host("lab", "198.18.0.1")
    assert config.hosts == (server, lab)
    knock = (
        Step(7000, "udp"),
        Step(8000, "udp"),
        Step(9000, "tcp", frozenset({"SYN"}), frozenset({"ACK"})),
    )
    assert config.sequence("ssh") == ClientSequence("ssh", server, knock=knock, delay=0.2)
    rolling = config.sequence("rolling")
    assert rolling is not None and rolling.totp is not None
    assert (rolling.host, rolling.totp.secret, rolling.totp.secret_file) == (
        lab,
        b"12345678901234567890",
        str(tmp_path / "totp.key"),
    )
    assert config.sequence("vault") == ClientSequence(
        "vault", server, one_time_file=str(tmp_path / "vault.txt"), payload=b"\x01faux"
    )
    assert config.sequence("web") == ClientSequence(
        "web", lab, knock=(Step(80, "tcp"),), payload=b"hi"
    )


HOSTS = "hosts:\n  s: 198.18.0.1\nsequences:\n"

# (case, text, "LINE:COLUMN: message"): every problem is named with its place.
BAD_CONFIGS = [
    (
        "unknown-key",
        HOSTS + "  a: {host: s, knock: [1/udp], dealy: 1s}\n",
        "4:32: unknown key 'dealy' (did you mean 'delay'?)",
    ),
    ("unknown-top", "host: {}\n", "1:1: unknown key 'host' (did you mean 'hosts'?)"),
    (
        "unknown-host",
        HOSTS + "  a: {host: t, knock: [1/udp]}\n",
        "4:13: host: 't' is not a host listed under hosts",
    ),
    (
        "host-hint",
        "hosts: {server: x}\nsequences: {a: {host: sever, knock: [1/udp]}}\n",
        "2:23: host: 'sever' is not a host listed under hosts (did you mean 'server'?)",
    ),
    ("no-host", HOSTS + "  a: {knock: [1/udp]}\n", "4:3: sequence a: needs host"),
    (
        "no-kind",
        HOSTS + "  a: {host: s}\n",
        "4:3: sequence a: needs exactly one of knock, one_time or totp",
    ),
    (
        "two-kinds",
        HOSTS + "  a: {host: s, knock: [1/udp], one_time: x.txt}\n",
        "4:3: sequence a: needs exactly one",
    ),
    ("empty-knock", HOSTS + "  a: {host: s, knock: []}\n", "4:23: knock: needs at least one step"),
    (
        "knockd-step",
        HOSTS + "  a: {host: s, knock: ['7000:udp']}\n",
        "4:24: knock: '7000:udp' is knockd's spelling: write 7000/udp",
    ),
    (
        "ack-step",
        HOSTS + "  a: {host: s, knock: ['9000/tcp:ack']}\n",
        "4:24: knock: '9000/tcp:ack': a TCP knock is a plain SYN",
    ),
    ("family", "hosts:\n  s: {address: x, family: 5}\n", "2:27: family: expected 4 or 6, not 5"),
    ("no-address", "hosts:\n  s: {family: 4}\n", "2:3: host s: needs address"),
    (
        "delay",
        HOSTS + "  a: {host: s, knock: [1/udp], delay: soon}\n",
        "4:39: delay: 'soon' is not a duration",
    ),
    (
        "payload-size",
        HOSTS + f"  a: {{host: s, knock: [1/udp], payload: {'x' * 1401}}}\n",
        "4:41: payload: the payload has 1401 bytes",
    ),
    (
        "payload-both",
        HOSTS + "  a: {host: s, knock: [1/udp], payload: x, payload_file: y}\n",
        "4:3: sequence a: payload and payload_file exclude",
    ),
    (
        "payload-file",
        HOSTS + "  a: {host: s, knock: [1/udp], payload_file: none.bin}\n",
        "4:46: payload_file: cannot read",
    ),
    (
        "one-time-missing",
        HOSTS + "  a: {host: s, one_time: none.txt}\n",
        "4:26: one_time: cannot read",
    ),
    (
        "totp-no-secret",
        HOSTS + "  a: {host: s, totp: {steps: 3}}\n",
        "4:16: totp: needs secret_file",
    ),
    (
        "totp-steps",
        HOSTS + "  a: {host: s, totp: {secret_file: /dev/null, steps: 17}}\n",
        "4:54: steps: 17 is out of range",
    ),
    (
        "name",
        HOSTS + "  -a: {host: s, knock: [1/udp]}\n",
        "4:3: '-a' is not a usable sequence name",
    ),
    (
        "sequences-list",
        HOSTS.replace("sequences:\n", "sequences: [a]\n"),
        "3:12: sequences must be a mapping",
    ),
    (
        "duplicate",
        HOSTS + "  a: {host: s, knock: [1/udp]}\n  a: {host: s, knock: [2/udp]}\n",
        "5:3: duplicate key 'a'",
    ),
    ("not-yaml", "hosts: [\n", "2:1: YAML syntax: expected the node content"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_configuration_problems_name_their_place(text: str, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "client.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_client(str(path))
    place, _, message = expected.partition(": ")
    wanted = f"{path}:{place}: error: {message}" if place[0].isdigit() else expected
    assert wanted in str(caught.value)


def test_a_missing_configuration_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_client(str(tmp_path / "none.yaml"))


# --- the command --------------------------------------------------------------------------

USAGE_ERRORS = [
    ([], "name a HOST and at least one STEP"),
    (["127.0.0.1"], "name a HOST and at least one STEP"),
    (["127.0.0.1", "7000/icmp"], "unknown protocol"),
    (["127.0.0.1", "7000/udp", "--config", "x.yaml"], "--config needs --sequence"),
    (["127.0.0.1", "--sequence", "ssh", "--config", "client.yaml"], "not both"),
    (
        ["--sequence", "shh", "--config", "client.yaml"],
        "has no sequence 'shh' (did you mean 'ssh'?)",
    ),
    (["--sequence", "ssh", "--config", "none.yaml"], "none.yaml: error: cannot read"),
    (["-6", "127.0.0.1", "7000/udp"], "is an IPv4 address"),
    (["127.0.0.1", "7000/udp", "--payload", "x" * 1401], "1401 bytes"),
    (["127.0.0.1", "7000/udp", "--delay", "200"], "needs a unit"),
    (["-4", "-6", "127.0.0.1", "7000/udp"], "not allowed with"),
]


@pytest.mark.parametrize(("argv", "message"), USAGE_ERRORS)
def test_usage_and_config_errors_exit_2_and_send_nothing(
    argv: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "client.yaml").write_text(HOSTS + "  ssh: {host: s, knock: [7000/udp]}\n")
    sent: list[Step] = []
    monkeypatch.setattr(cmd_knock, "send", lambda target, steps, **kw: sent.extend(steps))
    try:
        code = cmd_knock.main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = int(str(exit_.code))
    assert (code, sent) == (2, [])
    assert message in capsys.readouterr().err


def test_register_adds_the_knock_command() -> None:
    parser = argparse.ArgumentParser(prog="logknock")
    cmd_knock.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["knock", "-6", "--delay", "1s", "h", "7000/udp", "9000/tcp"])
    assert (args.func, args.family, args.delay, args.host, args.steps) == (
        cmd_knock.run,
        6,
        1.0,
        "h",
        ["7000/udp", "9000/tcp"],
    )


def test_knock_sends_to_the_resolved_address_and_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "faux.bin").write_bytes(b"faux")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        port = receiver.getsockname()[1]
        argv = [
            "-v",
            "--delay",
            "0s",
            "--payload",
            f"@{tmp_path}/faux.bin",
            "127.0.0.1",
            f"{port}/udp",
            f"{port}:udp",
        ]
        assert cmd_knock.main(argv) == 0
        assert [receiver.recv(100), receiver.recv(100)] == [b"faux", b"faux"]
    out = capsys.readouterr().out
    assert f"knocking 127.0.0.1: {port}/udp {port}/udp, 0s apart" in out
    assert out.count(f"{port}/udp sent") == 2


def test_knocking_a_one_time_sequence_uses_a_fresh_line_each_time(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        port = receiver.getsockname()[1]
        _one_time(tmp_path, f"{port}:udp\n{port}:udp {port}:udp\n")
        (tmp_path / "c.yaml").write_text(
            "hosts: {me: 127.0.0.1}\nsequences: {v: {host: me, one_time: vault.txt, payload: v}}\n"
        )
        argv = ["--sequence", "v", "--config", str(tmp_path / "c.yaml"), "--delay", "0s"]
        assert [cmd_knock.main(argv) for _ in range(3)] == [0, 0, 2]
        assert [receiver.recv(10) for _ in range(3)] == [b"v"] * 3
        receiver.setblocking(False)
        with pytest.raises(BlockingIOError):
            receiver.recv(10)


def test_a_repeated_step_within_the_duplicate_window_is_warned_about(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cmd_knock, "send", lambda target, steps, **kw: ())
    assert cmd_knock.main(["127.0.0.1", "7000/udp", "7000/udp", "--delay", "1s"]) == 0
    assert "7000/udp twice in a row" in capsys.readouterr().err
    assert cmd_knock.main(["127.0.0.1", "7000/udp", "7000/udp", "--delay", "1100ms"]) == 0
    assert capsys.readouterr().err == ""


# --- TOTP: why the client does not wait at a period boundary -----------------------------

TOTP = Totp(secret=b"12345678901234567890", secret_file="/dev/null", period=30.0, steps=3)
SRC, DST = ipaddress.ip_address("198.18.0.2"), ipaddress.ip_address("198.18.0.1")


@pytest.mark.parametrize(
    ("computed_at", "times"),
    [
        (29.9, (29.9, 30.1, 30.3)),  # the sequence straddles the boundary
        (29.9, (30.1, 30.3, 30.5)),  # computed in one period, all knocks land in the next
    ],
)
def test_the_server_completes_a_totp_knock_that_crosses_a_period_boundary(
    computed_at: float, times: tuple[float, ...]
) -> None:
    tracker = Tracker(Config(sequences=(Sequence("t", totp=TOTP, open=(PortSpec(22, "tcp"),)),)))
    ports = totp_ports(TOTP, counter_at(TOTP, computed_at))
    decisions = [
        d
        for port, at in zip(ports, times, strict=True)
        for d in tracker.feed(Knock(SRC, DST, "udp", port, at))
    ]
    assert [(d.action.value, d.sequence) for d in decisions] == [("open", "t")]


# --- the real kernel: what the server's log rule sees --------------------------------------


def _lab_usable() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None:
        return False
    return subprocess.run(["ip", "netns", "list"], capture_output=True, check=False).returncode == 0


needs_lab = pytest.mark.skipif(not _lab_usable(), reason="needs root, `ip netns` and nft")
QUIET = 3.5  # the first SYN retransmit comes after 1s, the second after 3s: wait past both


class KnockLab:
    """A lab whose server logs every TCP and UDP packet with its own prefix, and drops it."""

    def __init__(self, lab: Lab, prefix: str) -> None:
        self.lab = lab
        self.prefix = prefix
        self.matcher = Matcher(load_pack("netfilter", ROOT / "patterns"), prefix, "kmsg")

    def server(self, family: int) -> str:
        return str(self.lab.server_v4 if family == 4 else self.lab.server_v6)

    def client(self, family: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return self.lab.client_v4 if family == 4 else self.lab.client_v6

    def run(self, argv: list[str], user: list[str] = NOBODY) -> subprocess.CompletedProcess[bytes]:
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": "/nonexistent"}
        return self.lab.run_in(self.lab.client_ns, [*user, *argv], env=env, check=False)

    def knock(self, *args: str, user: list[str] = NOBODY) -> subprocess.CompletedProcess[bytes]:
        return self.run([sys.executable, "-m", "logknock.cmd_knock", *args], user)

    def logged(self, klog: KernelLog, expected: int) -> list[tuple[Event, bytes]]:
        """What the server logged: `expected` records, or more if they came within QUIET."""
        records = klog.collect(lambda r: self.prefix.encode() in r, expected + 1, QUIET)
        events = [(self.matcher.match(r).event, r) for r in records]
        assert all(event is not None for event, _ in events), records
        return [(event, r) for event, r in events if event is not None]


@pytest.fixture(scope="module")
def knock_lab(checkout_for_nobody: None) -> Iterator[KnockLab]:
    if not _lab_usable():
        pytest.skip("needs root, `ip netns` and nft")
    prefix = f"lkcl{os.getpid() % 100000}: "
    rules = (
        "table inet knock {\n chain input {\n type filter hook input priority 0; policy accept;\n"
        f' meta l4proto {{ tcp, udp }} log prefix "{prefix}" drop\n }}\n}}\n'
    )
    with nf_log_all_netns(), Lab("lkcl") as lab:
        lab.run_in(lab.server_ns, ["nft", "-f", "-"], input=rules.encode())
        yield KnockLab(lab, prefix)


def _wire(events: list[tuple[Event, bytes]]) -> list[tuple[int | None, str]]:
    return [(event.dpt, event.proto) for event, _ in events]


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.root
@pytest.mark.slow
@needs_lab
def test_each_knock_is_exactly_one_packet_and_needs_no_root(
    knock_lab: KnockLab, family: int
) -> None:
    with KernelLog() as klog:
        proc = knock_lab.knock(
            "--delay",
            "50ms",
            knock_lab.server(family),
            "7001/udp",
            "7002/tcp",
            "7003/udp",
            "7004/tcp",
        )
        assert proc.returncode == 0, proc.stderr
        events = knock_lab.logged(klog, 4)
    assert _wire(events) == [(7001, "UDP"), (7002, "TCP"), (7003, "UDP"), (7004, "TCP")]
    assert all(event.src == knock_lab.client(family) for event, _ in events)
    assert [event.tcp_flags for event, _ in events if event.proto == "TCP"] == [
        frozenset({"SYN"})
    ] * 2


@pytest.mark.root
@pytest.mark.slow
@needs_lab
def test_a_udp_knock_carries_the_payload_and_nothing_by_default(knock_lab: KnockLab) -> None:
    with KernelLog() as klog:
        assert knock_lab.knock(knock_lab.server(4), "7001/udp").returncode == 0
        assert (
            knock_lab.knock("--payload", "hello", knock_lab.server(4), "7002/udp").returncode == 0
        )
        events = knock_lab.logged(klog, 2)
    udp_lengths = [record.rsplit(b"LEN=", 1)[1].split()[0] for _, record in events]
    assert udp_lengths == [b"8", b"13"]  # the UDP header, then 5 bytes more


# One sequence, three steps, sent with each tool people already use. A case is a line.
UDP3 = [(7101, "UDP"), (7102, "UDP"), (7103, "UDP")]
MIXED = [(7101, "UDP"), (7102, "TCP"), (7103, "UDP")]
NC = "for p in 7101 7102 7103; do printf x | nc -u {w} {s} $p; done"
DEV_UDP = "for p in 7101 7102 7103; do echo > /dev/udp/{s}/$p; done"
FOREIGN = [  # (case, tool, family, argv, what the server sees)
    ("knock", "knock", 4, ["knock", "{s}", "7101:udp", "7102:tcp", "7103:udp"], MIXED),
    ("knock-6", "knock", 6, ["knock", "-6", "{s}", "7101:udp", "7102:tcp", "7103:udp"], MIXED),
    ("knock-u", "knock", 4, ["knock", "-u", "-d", "50", "{s}", "7101", "7102", "7103"], UDP3),
    ("nc-w0", "nc", 4, ["bash", "-c", NC.replace("{w}", "-w0")], UDP3),
    ("nc-q0-6", "nc", 6, ["bash", "-c", NC.replace("{w}", "-q0")], UDP3),
    ("dev-udp", "bash", 4, ["bash", "-c", DEV_UDP], UDP3),
    ("dev-udp-6", "bash", 6, ["bash", "-c", DEV_UDP], UDP3),
]


@pytest.mark.parametrize(
    ("tool", "family", "argv", "wire"), [c[1:] for c in FOREIGN], ids=[c[0] for c in FOREIGN]
)
@pytest.mark.root
@pytest.mark.slow
@needs_lab
def test_other_clients_knock_one_packet_per_step(
    knock_lab: KnockLab, tool: str, family: int, argv: list[str], wire: list[tuple[int, str]]
) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    with KernelLog() as klog:
        proc = knock_lab.run([a.replace("{s}", knock_lab.server(family)) for a in argv])
        assert proc.returncode == 0, proc.stderr
        events = knock_lab.logged(klog, len(wire))
    assert _wire(events) == wire
    assert all(event.src == knock_lab.client(family) for event, _ in events)


@pytest.mark.root
@pytest.mark.slow
@needs_lab
def test_a_knock_that_cannot_be_sent_exits_1(knock_lab: KnockLab) -> None:
    with KernelLog() as klog:
        proc = knock_lab.knock("198.19.0.1", "7001/udp", "7002/tcp")  # no route in the client
        unknown = knock_lab.knock("no-such-host.invalid", "7001/udp")
        assert knock_lab.logged(klog, 0) == []
    assert proc.returncode == 1
    assert proc.stderr.decode().count("not sent: Network is unreachable") == 2
    assert unknown.returncode == 1
    assert b"cannot resolve no-such-host.invalid" in unknown.stderr


@pytest.fixture
def server_name(knock_lab: KnockLab) -> Iterator[str]:
    """`server.example` resolves to both server addresses in the client namespace.

    `ip netns exec` mounts /etc/netns/NAME/hosts over /etc/hosts; the folder
    is ours and removed afterwards (/etc/netns too, when we made it and it is empty).
    """
    base = Path("/etc/netns")
    made_base = not base.exists()
    folder = base / knock_lab.lab.client_ns
    folder.mkdir(parents=True)
    try:
        (folder / "hosts").write_text(
            f"{knock_lab.server(4)} server.example\n{knock_lab.server(6)} server.example\n"
        )
        yield "server.example"
    finally:
        shutil.rmtree(folder)
        if made_base:
            with contextlib.suppress(OSError):
                base.rmdir()


FIRST_ADDRESS = (
    "import socket; "
    "print(socket.getaddrinfo('server.example', None, 0, socket.SOCK_DGRAM)[0][4][0])"
)


@pytest.mark.root
@pytest.mark.slow
@needs_lab
def test_family_flags_pick_the_address_and_verbose_names_it(
    knock_lab: KnockLab, server_name: str
) -> None:
    first = knock_lab.run([sys.executable, "-c", FIRST_ADDRESS]).stdout.decode().strip()
    expected = {"-4": knock_lab.server(4), "-6": knock_lab.server(6), "-v": first}
    for flag, address in expected.items():
        with KernelLog() as klog:
            proc = knock_lab.knock("-v", flag, server_name, "7201/udp")
            events = knock_lab.logged(klog, 1)
        assert f"knocking {address} ({server_name}): 7201/udp" in proc.stdout.decode()
        assert [ipaddress.ip_address(address)] == [event.dst for event, _ in events]


@pytest.mark.root
@pytest.mark.slow
@needs_lab
def test_configured_totp_and_one_time_sequences(knock_lab: KnockLab, tmp_path: Path) -> None:
    (tmp_path / "totp.key").write_text(SECRET_B32)
    _one_time(tmp_path, "7301:udp 7302:tcp\n7303 7304:udp\n")
    (tmp_path / "client.yaml").write_text(
        f"hosts: {{server: {{address: {knock_lab.server(6)}}}}}\nsequences:\n"
        "  rolling: {host: server, totp: {secret_file: totp.key, ports: 20000-29999, proto: udp}}\n"
        "  vault: {host: server, one_time: vault.txt, delay: 10ms}\n"
    )
    config = ["--config", str(tmp_path / "client.yaml"), "--sequence"]  # as root: tmp_path is 0700
    with KernelLog() as klog:
        before = time.time()
        assert knock_lab.knock(*config, "rolling", user=[]).returncode == 0
        after = time.time()
        totp = knock_lab.logged(klog, 3)
    possible = {totp_ports(TOTP, counter_at(TOTP, t)) for t in (before, after)}
    assert tuple(event.dpt for event, _ in totp) in possible
    with KernelLog() as klog:
        codes = [knock_lab.knock(*config, "vault", user=[]).returncode for _ in range(3)]
        vault = knock_lab.logged(klog, 4)
    assert codes == [0, 0, 2]
    assert _wire(vault) == [(7301, "UDP"), (7302, "TCP"), (7303, "TCP"), (7304, "UDP")]
