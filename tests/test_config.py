"""The configuration loader: one fixture file per case, then table-driven value tests.

Each tests/fixtures/config/*.yaml starts with comment lines giving every
message `logknock check` must print for it, without the file name:

    # expect-error: 5:7: unknown key 'knocks' (did you mean 'knock'?)
    # expect-warning: 4:5: only 2 step(s): ...
    # expect: ok

Messages about another file name it relative to the fixture folder
(`data/bad-once.txt:2:10: ...`). The folder is copied to a temporary place
with fixed modes (files 0600, hooks and folders 0700) so that file-mode rules
see the same thing on every checkout.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from logknock import config
from logknock.config_check import findings
from logknock.config_values import parse_port_range, parse_port_spec
from logknock.durations import format_duration, parse_duration
from logknock.errors import ConfigError, Location
from logknock.onetime import parse_one_time
from logknock.schema import Config, PortSpec, SourceSpec, Step

FIXTURES = Path(__file__).parent / "fixtures" / "config"
CASES = sorted(FIXTURES.glob("*.yaml"))
EXPECT = ("# expect-error: ", "# expect-warning: ")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the fixture folder with modes that do not depend on the checkout."""
    root = tmp_path / "config"
    shutil.copytree(FIXTURES, root)
    for path in root.rglob("*"):
        path.chmod(0o700 if path.is_dir() or path.parent.name == "hooks" else 0o600)
    return root


def expectations(case: Path) -> list[tuple[str, str]]:
    header = []
    for line in case.read_text().splitlines():
        if not line.startswith("# expect"):
            break
        header.append(line)
    assert header, f"{case.name} starts with no '# expect...' line"
    if header == ["# expect: ok"]:
        return []
    assert all(line.startswith(EXPECT) for line in header), header
    return [(line[9:].split(":")[0], line.split(": ", 1)[1]) for line in header]


def render(loc: Location, message: str, case: Path, root: Path) -> str:
    where = "" if loc.path == str(case) else f"{os.path.relpath(loc.path, root)}:"
    if loc.line is not None:
        where += f"{loc.line}:{loc.column}: "
    return where + message.replace(f"{root}/", "")


def outcome(case: Path, root: Path) -> list[tuple[str, str]]:
    """What `check` reports for `case`: load errors, or the findings of a loaded file."""
    try:
        loaded, marks = config.load_with_marks(case)
    except ConfigError as exc:
        return [("error", render(loc, msg, case, root)) for loc, msg in exc.problems]
    found = findings(loaded, marks)
    return [(f.severity, render(f.loc, f.message, case, root)) for f in found]


@pytest.mark.parametrize("case", CASES, ids=lambda path: path.stem)
def test_fixture(case: Path, tree: Path) -> None:
    assert sorted(outcome(tree / case.name, tree)) == sorted(expectations(case))


def test_fixtures_cover_errors_warnings_and_good_files() -> None:
    kinds = {kind for case in CASES for kind, _ in expectations(case) or [("ok", "")]}
    assert kinds == {"error", "warning", "ok"}


# --- values -----------------------------------------------------------------

DURATIONS = [
    ("500ms", 0.5),
    ("5s", 5.0),
    ("2m", 120.0),
    ("1h", 3600.0),
    ("1d", 86400.0),
    ("1h30m", 5400.0),
    ("1d2h3m4s5ms", 93784.005),
    ("1.5h", 5400.0),
    ("2m30s", 150.0),
    (" 5s ", 5.0),
    ("30", 30.0),
    ("0.25", 0.25),
    (30, 30.0),
    (1.5, 1.5),
    (0, 0.0),
]
BAD_DURATIONS = ["", "5x", "s", "1m30", "30m1h", "1h 30m", "1S", "-5s", "5s5s", "1e3s"]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS)
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", BAD_DURATIONS)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [True, None, [], float("inf"), float("nan"), -1])
def test_parse_duration_rejects_non_durations(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.5, "500ms"), (5, "5s"), (90, "1m30s"), (86400, "1d"), (0, "0s")]
)
def test_format_duration_reads_back(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


STEPS = [
    ("7000/udp", Step(7000, "udp")),
    ("9000/tcp", Step(9000, "tcp")),
    ("1/TCP", Step(1, "tcp")),
    ("65535/udp", Step(65535, "udp")),
    ("9000/tcp:syn", Step(9000, "tcp", frozenset({"SYN"}))),
    ("9000/tcp:syn,!ack", Step(9000, "tcp", frozenset({"SYN"}), frozenset({"ACK"}))),
    ("9000/tcp:SYN, !Ack", Step(9000, "tcp", frozenset({"SYN"}), frozenset({"ACK"}))),
    ("9000/tcp:!rst,!fin", Step(9000, "tcp", flags_unset=frozenset({"RST", "FIN"}))),
    (
        "9000/tcp:fin,syn,rst,psh,ack,urg,ece,cwr",
        Step(9000, "tcp", frozenset({"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"})),
    ),
]
BAD_STEPS = [
    ("7000", "not a knock step"),
    ("7000:udp", "knockd's spelling: write 7000/udp"),
    ("0/udp", "out of range"),
    ("65536/tcp", "out of range"),
    ("-1/udp", "not a port number"),
    ("x/udp", "not a port number"),
    ("7000/icmp", "unknown protocol"),
    ("7000/", "unknown protocol"),
    ("7000/udp:syn", "only for tcp"),
    ("9000/tcp:", "unknown TCP flag"),
    ("9000/tcp:sin", "unknown TCP flag 'sin'"),
    ("9000/tcp:syn,syn", "named twice"),
    ("9000/tcp:syn,!syn", "named twice"),
    ("9000/tcp:syn,,ack", "unknown TCP flag"),
    ("٣٠٠٠/udp", "not a port number"),
]


@pytest.mark.parametrize(("text", "step"), STEPS)
def test_parse_step(text: str, step: Step) -> None:
    assert config.parse_step(text) == step


@pytest.mark.parametrize(("text", "message"), BAD_STEPS)
def test_parse_step_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config.parse_step(text)


@pytest.mark.parametrize("text", [text for text, _ in STEPS])
def test_step_text_reads_back(text: str) -> None:
    step = config.parse_step(text)
    assert config.parse_step(str(step)) == step


def test_port_spec_and_range() -> None:
    assert parse_port_spec("22/tcp") == PortSpec(22, "tcp")
    assert parse_port_range("20000-29999") == (20000, 29999)
    for bad in ("22", 22, "22/icmp"):
        with pytest.raises(ValueError):
            parse_port_spec(bad)
    for bad_range in ("20000", "3-2", "0-5", 20000):
        with pytest.raises(ValueError):
            parse_port_range(bad_range)


# --- one-time files ---------------------------------------------------------


def test_parse_one_time() -> None:
    text = "# comment\n\n7000:udp,8000:tcp 9000\n 1:UDP , 2/udp  # inline comment\n#3:udp\n"
    assert parse_one_time(text, "once.txt") == (
        (Step(7000, "udp"), Step(8000, "tcp"), Step(9000, "tcp")),
        (Step(1, "udp"), Step(2, "udp")),
    )


def test_parse_one_time_reports_every_bad_step() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_one_time("7000:udp\n  x:udp 8000:icmp\n\n70000\n", "once.txt")
    assert [(str(loc), msg.split(" ")[0]) for loc, msg in caught.value.problems] == [
        ("once.txt:2:3", "'x'"),
        ("once.txt:2:9", "unknown"),
        ("once.txt:4:1", "port"),
    ]


def test_parse_one_time_empty() -> None:
    assert parse_one_time("# nothing left\n\n", "once.txt") == ()


# --- the loaded objects ------------------------------------------------------


def test_empty_file_gives_defaults() -> None:
    assert config.load_text("", "/etc/logknock/logknock.yaml") == Config(
        path="/etc/logknock/logknock.yaml"
    )


def test_full_fixture_values(tree: Path) -> None:
    loaded = config.load(tree / "ok-full.yaml")
    assert loaded.sources == (
        SourceSpec("journal"),
        SourceSpec("kmsg"),
        SourceSpec("file", str(tree / "kern.log"), "kernel-only", "syslog"),
    )
    assert (loaded.pack, loaded.close_on_stop, loaded.hook_timeout) == ("netfilter@1.0.0", True, 10)
    assert (loaded.state_dir, loaded.control_socket) == (str(tree / "state"), str(tree / "control"))
    assert (loaded.bruteforce.window, loaded.bruteforce.ban_for) == (600, 3600)
    assert [s.name for s in loaded.sequences] == ["ssh", "ssh-close", "lights", "once", "totp"]


def test_full_fixture_sequences(tree: Path) -> None:
    loaded = config.load(tree / "ok-full.yaml")
    ssh, close, lights, once, totp = loaded.sequences
    assert ssh.knock[1] == Step(9300, "tcp", frozenset({"SYN"}), frozenset({"ACK"}))
    assert (ssh.open_for, ssh.step_timeout, ssh.sequence_timeout) == (60, 3, 10)
    assert ssh.hook == str(tree / "hooks" / "other")
    assert (close.closes, close.hook, close.open) == ("ssh", None, ())
    assert (lights.toggle, lights.hook, lights.open_for) == (True, str(tree / "hooks/nft-set"), 30)
    assert once.one_time_file == str(tree / "data" / "once.txt")
    assert once.one_time[1] == (Step(6100, "udp"), Step(6900, "tcp"), Step(6400, "udp"))
    assert totp.totp is not None
    assert totp.totp.secret == b"12345678901234567890"
    assert (totp.totp.port_low, totp.totp.port_high, totp.totp.steps) == (20000, 29999, 3)


def test_relative_paths_count_from_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("hooks_dir: ../hooks\nsource: file:k.log\n")
    loaded = config.load(tmp_path / "sub" / "c.yaml")
    assert loaded.hooks_dir == str(tmp_path / "hooks")
    assert loaded.sources[0].path == str(tmp_path / "sub" / "k.log")


def test_hook_path_or_name(tmp_path: Path) -> None:
    text = (
        "hooks_dir: /h\nsequences:\n"
        "  a: {knock: [1/udp], open: [2/tcp], hook: x}\n"
        "  b: {knock: [3/udp], open: [2/tcp], hook: /bin/x}\n"
        "  c: {knock: [4/udp], open: [2/tcp], hook: ./x}\n"
        "  d: {knock: [5/udp], open: [2/tcp]}\n"
    )
    loaded = config.load_text(text, str(tmp_path / "c.yaml"))
    assert [s.hook for s in loaded.sequences] == [
        "/h/x",
        "/bin/x",
        str(tmp_path / "x"),
        "/h/nft-set",
    ]


def test_null_values_mean_the_default() -> None:
    loaded = config.load_text("prefix:\nsequences:\ndefaults:\n")
    assert (loaded.prefix, loaded.sequences) == ("logknock: ", ())


def test_marks_point_at_keys() -> None:
    _, marks = config.load_text_with_marks(
        "sequences:\n  ssh:\n    knock:\n      - 1/udp\n      - 2/udp\n    open: [3/tcp]\n", "c"
    )
    assert str(marks("sequences.ssh.knock")) == "c:3:5"
    assert str(marks("sequences.ssh.knock.1")) == "c:5:9"
    assert str(marks("sequences.ssh.open_for")) == "c:2:3"  # not written: the sequence
    assert str(marks("prefix")) == "c"
    assert "sequences.ssh.hook" not in marks


def test_load_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b'prefix: "k\xe9: "\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        config.load(tmp_path / "latin1.yaml")


def test_error_lists_every_problem_in_file_order() -> None:
    with pytest.raises(ConfigError) as caught:
        config.load_text("pack: X Y\nprefix: 1\nsequence: {}\n", "c")
    assert [str(loc) for loc, _ in caught.value.problems] == ["c:1:7", "c:2:9", "c:3:1"]
    assert str(caught.value).splitlines()[2] == (
        "c:3:1: error: unknown key 'sequence' (did you mean 'sequences'?)"
    )


def test_alias_bomb_is_refused() -> None:
    lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for name, prev in zip("bcdef", "abcde", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]")
    with pytest.raises(ConfigError, match="more than 100000 values"):
        config.load_text("\n".join(lines))
