"""`logknock import-knockd`: knockd.conf in, logknock configuration and hooks out.

Each tests/fixtures/knockd/NAME.conf has NAME.expect beside it, one
expectation a line (adding a case adds files, not code):

    error LINE: TEXT               the conversion fails; every error, in order
    warning LINE: TEXT             every warning, in order (TEXT is part of the message)
    sequence NAME: KEY=VALUE; ...  a sequence of the written configuration, as loaded
    left-out NAME                  a section written commented out

Every converted configuration must pass `logknock check`. The hooks are run
for real: with a good address they run the old commands with it, with a
hostile LOGKNOCK_SRC they run nothing.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from testpaths import FIXTURES

from logknock import cmd_import, config
from logknock.durations import format_duration
from logknock.errors import ConfigError
from logknock.hooks import HOOK_PATH, run_hook
from logknock.knockd_import import convert, write_conversion
from logknock.knockd_shell import infer_ports, is_inverse, substitute_ip
from logknock.models import Action, Decision
from logknock.schema import Sequence

KNOCKD = FIXTURES / "knockd"
CASES = sorted(KNOCKD.glob("*.conf"))
V4, V6 = "198.51.100.7", "2001:db8::7"


@dataclass
class Expect:
    errors: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[tuple[int, str]] = field(default_factory=list)
    sequences: dict[str, dict[str, str]] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)


def read_expect(path: Path) -> Expect:
    expect = Expect()
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        kind, _, rest = line.partition(" ")
        head, _, text = rest.partition(": ")
        if kind in ("error", "warning"):
            getattr(expect, f"{kind}s").append((int(head), text))
        elif kind == "sequence":
            pairs = (item.strip().partition("=") for item in text.split(";"))
            expect.sequences[head] = {key: value for key, _, value in pairs}
        else:
            assert kind == "left-out", f"{path}: unknown expectation {line!r}"
            expect.left_out.append(rest)
    return expect


def matches(found: list[tuple[int, str]], expected: list[tuple[int, str]]) -> None:
    assert [line for line, _ in found] == [line for line, _ in expected], found
    for (line, message), (_, text) in zip(found, expected, strict=True):
        assert text in message, f"line {line}: {message!r} lacks {text!r}"


def described(sequence: Sequence) -> dict[str, str]:
    """A sequence as the .expect files write it."""
    return {
        "knock": " ".join(str(step) for step in sequence.knock),
        "one_time": os.path.basename(sequence.one_time_file or ""),
        "open": " ".join(str(port) for port in sequence.open),
        "open_for": format_duration(sequence.open_for),
        "sequence_timeout": format_duration(sequence.sequence_timeout),
        "step_timeout": format_duration(sequence.step_timeout),
        "closes": sequence.closes or "",
        "hook": os.path.basename(sequence.hook or ""),
    }


def check_passes(path: Path) -> None:
    """`logknock check`, run as the operator would."""
    run = [sys.executable, "-m", "logknock", "check", "--config", str(path)]
    result = subprocess.run(run, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "is usable" in result.stdout


# --- the fixtures -------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda path: path.stem)
def test_fixture(case: Path, tmp_path: Path) -> None:
    expect = read_expect(case.with_suffix(".expect"))
    if expect.errors:
        with pytest.raises(ConfigError) as failure:
            convert(str(case), str(tmp_path))
        matches([(loc.line or 0, m) for loc, m in failure.value.problems], expect.errors)
        assert all(loc.path == str(case) for loc, _ in failure.value.problems)
        return
    conversion = convert(str(case), str(tmp_path), mark_dir=str(tmp_path / "marks"))
    matches([(f.loc.line or 0, f.message) for f in conversion.findings], expect.warnings)
    write_conversion(conversion, str(tmp_path))
    loaded = config.load(tmp_path / "logknock.yaml")
    assert [s.name for s in loaded.sequences] == list(expect.sequences)
    for sequence in loaded.sequences:
        wanted = expect.sequences[sequence.name]
        assert {key: described(sequence)[key] for key in wanted} == wanted, sequence.name
    assert conversion.left_out == len(expect.left_out)
    for name in expect.left_out:
        assert f"  # {name}:\n" in conversion.config
    check_passes(tmp_path / "logknock.yaml")
    for name, _ in conversion.hooks:
        syntax = subprocess.run(["sh", "-n", tmp_path / "hooks" / name], check=False)
        assert syntax.returncode == 0, name


def test_every_fixture_has_expectations_and_they_cover_each_outcome() -> None:
    expects = [read_expect(case.with_suffix(".expect")) for case in CASES]
    assert sorted(KNOCKD.glob("*.expect")) == [case.with_suffix(".expect") for case in CASES]
    assert any(e.errors for e in expects) and any(e.left_out for e in expects)
    closes = [s for e in expects for s in e.sequences.values() if s.get("closes")]
    assert closes and any(e.warnings and not e.errors for e in expects)


@pytest.mark.skipif(not Path("/etc/knockd.conf").exists(), reason="knockd is not installed")
def test_debian_fixture_is_the_packaged_file() -> None:
    packaged = Path("/etc/knockd.conf").read_bytes()
    assert (KNOCKD / "debian-knockd.conf").read_bytes() == packaged


def test_findings_are_listed_at_the_top_of_the_configuration(tmp_path: Path) -> None:
    conversion = convert(str(KNOCKD / "debian-knockd.conf"), str(tmp_path))
    header = conversion.config.split("\nsequences:")[0]
    assert conversion.findings
    for finding in conversion.findings:
        assert f"#   {finding}\n" in header


# --- the command ----------------------------------------------------------------------


def test_command_writes_files_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = KNOCKD / "debian-knockd.conf"
    assert cmd_import.main([str(source), "--output-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    expected = convert(str(source), str(tmp_path)).findings
    assert err.splitlines() == [str(finding) for finding in expected]
    assert out.startswith(f"logknock: converted {source} into {tmp_path}/logknock.yaml")
    assert "(3 sequence(s), 2 hook(s), 5 warning(s))" in out
    assert stat.S_IMODE((tmp_path / "logknock.yaml").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "hooks").stat().st_mode) == 0o755
    hooks = sorted(path.name for path in (tmp_path / "hooks").iterdir())
    assert hooks == ["knockd-openHTTPS", "knockd-openSSH"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o755 for p in (tmp_path / "hooks").iterdir())


def test_open_for_applies_where_knockd_closed_only_by_another_knock(tmp_path: Path) -> None:
    argv = [str(KNOCKD / "debian-knockd.conf"), "-o", str(tmp_path), "--open-for", "2h30m"]
    assert cmd_import.main(argv) == 0
    loaded = config.load(tmp_path / "logknock.yaml")
    open_for = {s.name: format_duration(s.open_for) for s in loaded.sequences if s.hook}
    assert open_for == {"openSSH": "2h30m", "openHTTPS": "30s"}


def test_existing_files_are_kept_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = str(KNOCKD / "manpage-example2.conf")
    (tmp_path / "logknock.yaml").write_text("mine\n")
    assert cmd_import.main([source, "-o", str(tmp_path)]) == 1
    assert "would overwrite" in capsys.readouterr().err
    assert (tmp_path / "logknock.yaml").read_text() == "mine\n"
    assert not (tmp_path / "hooks").exists()
    assert cmd_import.main([source, "-o", str(tmp_path), "--force"]) == 0
    assert "opencloseSSH:" in (tmp_path / "logknock.yaml").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["broken.conf"], "broken.conf:4: error: expected KEY = VALUE"),
        (["missing.conf"], "missing.conf: error: cannot read"),
        (["debian-knockd.conf", "--open-for", "0"], "--open-for: 0 is too short"),
    ],
)
def test_command_fails_with_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(KNOCKD / args[0]), *args[1:], "-o", str(tmp_path)]
    assert cmd_import.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "logknock.yaml").exists()


def test_runs_as_a_module(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "logknock.cmd_import", str(KNOCKD / "manpage-example1.conf")]
    result = subprocess.run([*run, "-o", str(tmp_path)], capture_output=True, check=False)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "hooks" / "knockd-openSSH").exists()


# --- the hooks, run -------------------------------------------------------------------

LOGGING = """\
[log]
\tsequence      = 7101:udp,7202:udp,7303:udp
\tstart_command = echo %IP% >> {out}
\tcmd_timeout   = 5
\tstop_command  = printf '%s closed\\n' '%IP%' >> {out}
"""


def make_hook(tmp_path: Path, knockd_conf: str, name: str = "log") -> Path:
    source = tmp_path / "knockd.conf"
    source.write_text(knockd_conf)
    output = tmp_path / "converted"
    conversion = convert(str(source), str(output), mark_dir=str(tmp_path / "marks"))
    write_conversion(conversion, str(output))
    return output / "hooks" / f"knockd-{name}"


def decide(action: Action, src: str) -> Decision:
    return Decision(0.0, action, ipaddress.ip_address(src), "log", (), 30.0)


def hook(path: Path, action: Action, src: str) -> int | None:
    """Run the hook the way the daemon does (argv, environment, timeout)."""
    result = run_hook(path, decide(action, src), 0.0, timeout=10.0)
    assert result.error is None
    return result.exit_code


def test_hook_runs_the_commands_with_the_address(tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = make_hook(tmp_path, LOGGING.format(out=out))
    for src in (V4, V6):
        assert hook(path, Action.OPEN, src) == 0
        assert hook(path, Action.CLOSE, src) == 0
    assert out.read_text().splitlines() == [V4, f"{V4} closed", V6, f"{V6} closed"]


def test_hook_starts_once_per_grant(tmp_path: Path) -> None:
    """A grant knocked again runs `open` again; the start command must not."""
    out = tmp_path / "out"
    path = make_hook(tmp_path, LOGGING.format(out=out))
    codes = [hook(path, action, V4) for action in (Action.OPEN, Action.OPEN)]
    codes += [hook(path, action, V4) for action in (Action.CLOSE, Action.CLOSE)]
    assert codes == [0, 0, 0, 0]
    assert out.read_text().splitlines() == [V4, f"{V4} closed"]


def test_failed_start_is_not_closed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    failing = LOGGING.replace("echo %IP%", "exit 3; echo %IP%")
    path = make_hook(tmp_path, failing.format(out=out))
    assert hook(path, Action.OPEN, V4) == 3
    assert hook(path, Action.CLOSE, V4) == 0
    assert not out.exists()


def test_hook_picks_the_command_for_the_family(tmp_path: Path) -> None:
    out = tmp_path / "out"
    both = f"{LOGGING}\tstart_command_6 = echo six %IP% >> {{out}}\n\tstop_command_6 =\n"
    path = make_hook(tmp_path, both.format(out=out))
    codes = [hook(path, action, src) for src in (V4, V6) for action in (Action.OPEN, Action.CLOSE)]
    assert codes == [0, 0, 0, 0]
    assert out.read_text().splitlines() == [V4, f"{V4} closed", f"six {V6}"]


HOSTILE = [
    "1.2.3.4;touch {canary}",
    "$(touch {canary})",
    "`touch {canary}`",
    "1.2.3.4 5.6.7.8",
    "1.2.3.4\ntouch {canary}",
    "'; touch {canary}; '",
    "../{canary}",
    "::1%eth0",
    "",
]


@pytest.mark.parametrize("src", HOSTILE)
def test_hook_refuses_a_hostile_address(src: str, tmp_path: Path) -> None:
    out, canary = tmp_path / "out", tmp_path / "canary"
    path = make_hook(tmp_path, LOGGING.format(out=out))
    env = {"PATH": HOOK_PATH, "LOGKNOCK_ACTION": "open", "LOGKNOCK_SRC": src.format(canary=canary)}
    result = subprocess.run([path, "open"], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "LOGKNOCK_SRC is not an IP address; nothing run" in result.stderr
    assert not out.exists() and not canary.exists() and not (tmp_path / "marks").exists()


@pytest.mark.parametrize(("action", "code"), [("ban", 0), ("unban", 0), ("reboot", 2), ("", 2)])
def test_hook_other_actions_run_nothing(action: str, code: int, tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = make_hook(tmp_path, LOGGING.format(out=out))
    env = {"PATH": HOOK_PATH, "LOGKNOCK_SRC": V4}
    result = subprocess.run([path, action], env=env, capture_output=True, check=False)
    assert result.returncode == code
    assert not out.exists()


# --- %IP% in shell text ---------------------------------------------------------------

COMMANDS = [
    line
    for line in (KNOCKD / "commands.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


def sh(script: str) -> str:
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, (script, result.stderr)
    return result.stdout


def as_knockd(command: str, address: str) -> str:
    return sh(command.replace("%IP%", address))


def as_hook(command: str, address: str) -> str:
    return sh(f"ip={address}\n{substitute_ip(command)}")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("address", [V4, V6])
def test_substitution_runs_like_knockd(command: str, address: str) -> None:
    assert address in as_knockd(command, address)
    assert as_hook(command, address) == as_knockd(command, address)


@pytest.mark.parametrize("command", COMMANDS)
def test_substituted_address_is_never_code(command: str, tmp_path: Path) -> None:
    """Even a value the hook would refuse stays data once substituted."""
    canary = tmp_path / "canary"
    for value in ("$(touch {c})", "`touch {c}`", "';touch {c};'", '";touch {c};"'):
        text = f"ip={sh_quote(value.format(c=canary))}\n{substitute_ip(command)}"
        subprocess.run(["sh", "-c", text], capture_output=True, check=False)
        assert not canary.exists(), (command, value)


def sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


FRAGMENTS = [
    "%IP%",
    "'%IP%'",
    '"%IP%"',
    "'a %IP% b'",
    '"a %IP% b"',
    "$(echo %IP%)",
    "\"$(echo '%IP%')\"",
    "`echo %IP%`",
    "${U:-%IP%}",
    '"${U:-%IP%}"',
    "x%IP%y",
    "\\%IP%",
    "'a\"b'",
    '"a\'b"',
    "\\'",
    "z",
]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(FRAGMENTS), st.sampled_from([" ", ""])), max_size=6))
def test_any_mix_of_quoting_runs_like_knockd(parts: list[tuple[str, str]]) -> None:
    command = "printf '<%s>\\n' start " + "".join(text + gap for text, gap in parts)
    assert as_hook(command, V6) == as_knockd(command, V6)


@pytest.mark.parametrize("command", ["echo 'a %IP%", 'echo "%IP%', "echo `id", "echo $(id", "a\\"])
def test_unterminated_quoting_is_refused(command: str) -> None:
    with pytest.raises(ValueError, match=r"unterminated|backslash"):
        substitute_ip(command)


# --- what a command opens, and which commands undo each other ------------------------


@pytest.mark.parametrize(
    ("command", "ports"),
    [
        ("/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT", "22/tcp"),
        ("/sbin/iptables -A INPUT -s %IP% --dport 22 -j ACCEPT", "22/tcp"),
        ("iptables -I INPUT -s %IP% -p udp --destination-port 1194 -j ACCEPT", "1194/udp"),
        (
            "iptables -A INPUT -s %IP% -p tcp -m multiport --dports 80,443 -j ACCEPT",
            "80/tcp 443/tcp",
        ),
        (
            "nft add rule inet f input ip saddr %IP% tcp dport { 22, 2222 } accept",
            "22/tcp 2222/tcp",
        ),
        ("nft add element inet f allowed { %IP% . udp . 53 }", "53/udp"),
        ("ipset add knocked %IP%,tcp:8443", "8443/tcp"),
        ("iptables -A INPUT -s %IP% -p tcp --dport 1000:2000 -j ACCEPT", ""),
        ("iptables -A INPUT -s %IP% -p tcp --syn -j ACCEPT", ""),
        ("/usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%", ""),
    ],
)
def test_infer_ports(command: str, ports: str) -> None:
    assert " ".join(str(port) for port in infer_ports(command)) == ports


@pytest.mark.parametrize(
    ("opener", "closer", "inverse"),
    [
        (
            "iptables -A INPUT -s %IP% --dport 22 -j ACCEPT",
            "iptables -D INPUT -s %IP% --dport 22 -j ACCEPT",
            True,
        ),
        ("iptables -I INPUT 1 -s %IP% -j ACCEPT", "iptables -D INPUT -s %IP% -j ACCEPT", True),
        ("ipset add knock %IP%", "ipset del knock %IP%", True),
        ("nft add element inet f s { %IP% }", "nft delete element inet f s { %IP% }", True),
        ("iptables -A INPUT -s %IP% --dport 22", "iptables -D INPUT -s %IP% --dport 23", False),
        ("iptables -D INPUT -s %IP%", "iptables -A INPUT -s %IP%", False),
        ("iptables -A INPUT -s %IP%", "iptables -A INPUT -s %IP%", False),
        ("logger 'open %IP%", "logger 'close %IP%", False),
    ],
)
def test_is_inverse(opener: str, closer: str, inverse: bool) -> None:
    assert is_inverse(opener, closer) is inverse
