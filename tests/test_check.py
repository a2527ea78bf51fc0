"""`logknock check`: exit codes and output, the shipped examples, and the file-mode rules.

The message texts of each rule are pinned by tests/fixtures/config/; here
are the cases that need files with particular modes and owners, which a
checkout cannot carry.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from testpaths import ROOT, needs_root

from logknock import cli, config
from logknock.config_check import ERROR, WARNING, errors, findings, warnings
from logknock.schema import SourceSpec

GOOD = "sequences:\n  ssh:\n    knock: [7100/udp, 9300/tcp, 8200/udp]\n    open: [22/tcp]\n"
SHORT = "sequences:\n  ssh:\n    knock: [7100/udp, 9300/tcp]\n    open: [22/tcp]\n"
TOO_FEW = "stray traffic or a scan can complete it; use 3 or more"
EXAMPLES = [ROOT / "etc" / "logknock.yaml", ROOT / "etc" / "example-full.yaml"]


def write_config(folder: Path, body: str, hooks_dir: str = "hooks") -> Path:
    """A configuration in `folder` whose default hook is `folder/hooks/nft-set`, 0700."""
    (folder / "hooks").mkdir(mode=0o700, exist_ok=True)
    hook = folder / "hooks" / "nft-set"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o700)
    path = folder / "logknock.yaml"
    path.write_text(f"hooks_dir: {hooks_dir}\n{body}")
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["check", "--config", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


# --- the command ---------------------------------------------------------------


def test_usable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, GOOD)
    assert check(path, capsys) == (
        0,
        f"logknock: configuration {path} is usable (1 sequence, 0 warnings)\n",
        "",
    )


def test_warnings_leave_it_usable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, SHORT)
    code, out, err = check(path, capsys)
    assert code == 0
    assert out == f"logknock: configuration {path} is usable (1 sequence, 1 warning)\n"
    assert err == f"{path}:4:5: warning: only 2 step(s): {TOO_FEW}\n"


def test_errors_make_it_unusable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, GOOD.replace("knock:", "knocks:") + "prefix: 7\n")
    code, out, err = check(path, capsys)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"{path}:3:3: error: sequence 'ssh' needs exactly one of knock, one_time or totp",
        f"{path}:4:5: error: unknown key 'knocks' (did you mean 'knock'?)",
        f"{path}:6:9: error: prefix: expected text, not a number",
        f"logknock: configuration {path} is not usable (3 errors, 0 warnings)",
    ]


def test_check_time_errors_make_it_unusable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, SHORT + "source: file:/var/log/kern.log\n")
    code, out, err = check(path, capsys)
    assert (code, out) == (2, "")
    assert f"{path}:6:1: error: file source /var/log/kern.log is not marked" in err
    assert err.endswith(f"configuration {path} is not usable (1 error, 1 warning)\n")


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "none.yaml"
    assert check(path, capsys) == (
        2,
        "",
        f"{path}: error: cannot read: No such file or directory\n"
        f"logknock: configuration {path} is not usable (1 error, 0 warnings)\n",
    )


def test_default_path() -> None:
    args = cli.build_parser().parse_args(["check"])
    assert args.config == config.DEFAULT_PATH == "/etc/logknock/logknock.yaml"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_examples_are_usable(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(path, capsys)
    assert code == 0, err
    assert out.startswith(f"logknock: configuration {path} is usable")
    assert "error" not in err


def test_shipped_config_opens_nothing() -> None:
    loaded = config.load(EXAMPLES[0])
    assert (loaded.sequences, loaded.sources) == ((), (SourceSpec("journal"),))


def test_full_example_uses_every_key() -> None:
    _, marks = config.load_with_marks(EXAMPLES[1])
    top = {path for path in marks.table if path and "." not in path}
    assert top == set(config.TOP_KEYS) - {"patterns_dir"}  # commented out: it must exist
    keys = {path.split(".")[2] for path in marks.table if path.count(".") >= 2}
    assert keys >= {"knock", "open", "open_for", "closes", "toggle", "one_time", "totp"}


def test_real_process(tmp_path: Path) -> None:
    """The installed `logknock` script, as an administrator runs it."""
    script = Path(sys.executable).parent / "logknock"
    # Beside the interpreter in a venv; a package build has none there: use -m.
    command = [str(script)] if script.exists() else [sys.executable, "-m", "logknock"]
    good = subprocess.run(
        [*command, "check", "--config", EXAMPLES[0]], capture_output=True, text=True, check=False
    )
    assert (good.returncode, good.stderr) == (0, "")
    assert "is usable (0 sequences, 0 warnings)" in good.stdout
    bad = write_config(tmp_path, "sequences: [ssh]\n")
    broken = subprocess.run(
        [*command, "check", "-c", bad], capture_output=True, text=True, check=False
    )
    assert broken.returncode == 2
    assert f"{bad}:2:12: error: sequences must be a mapping" in broken.stderr


# --- hooks -----------------------------------------------------------------------


def messages(path: Path, uid: int | None = None) -> list[tuple[str, str]]:
    loaded, marks = config.load_with_marks(path)
    return [(f.severity, f.message) for f in findings(loaded, marks, uid=uid)]


HOOK_MODES = [
    (0o700, []),
    (0o755, []),
    (0o775, [(ERROR, "hook {hook}: writable by group or others: the daemon will not run it")]),
    (0o777, [(ERROR, "hook {hook}: writable by group or others: the daemon will not run it")]),
    (0o644, [(ERROR, "hook {hook}: not an executable file: the daemon will not run it")]),
]


@pytest.mark.parametrize(
    ("mode", "expected"), HOOK_MODES, ids=lambda v: oct(v) if isinstance(v, int) else ""
)
def test_hook_modes(tmp_path: Path, mode: int, expected: list[tuple[str, str]]) -> None:
    path = write_config(tmp_path, GOOD)
    hook = tmp_path / "hooks" / "nft-set"
    hook.chmod(mode)
    assert messages(path) == [(sev, msg.format(hook=hook)) for sev, msg in expected]


@needs_root
def test_hook_owned_by_someone_else(tmp_path: Path) -> None:
    path = write_config(tmp_path, GOOD)
    hook = tmp_path / "hooks" / "nft-set"
    os.chown(hook, 12345, 0)
    expected = f"hook {hook}: owned by uid 12345, must be root or the service user"
    expected += ": the daemon will not run it"
    assert messages(path) == [(ERROR, expected)]
    assert messages(path, uid=12345) == []  # the service user may own it


def test_hook_folder_writable(tmp_path: Path) -> None:
    path = write_config(tmp_path, GOOD)
    (tmp_path / "hooks").chmod(0o777)
    assert messages(path) == [
        (
            WARNING,
            f"{tmp_path / 'hooks'} is writable by group or others: they could replace the hook",
        )
    ]
    (tmp_path / "hooks").chmod(0o1777)  # sticky: others cannot replace root's file
    assert messages(path) == []


def test_hook_missing_named_is_an_error_inherited_a_warning(tmp_path: Path) -> None:
    named = write_config(tmp_path, GOOD + "    hook: gone\n")
    gone = tmp_path / "hooks" / "gone"
    missing = f"hook {gone}: No such file or directory: the daemon will not run it"
    assert messages(named) == [(ERROR, missing)]
    inherited = write_config(tmp_path, "defaults: {hook: gone}\n" + GOOD)
    assert messages(inherited) == [(WARNING, missing)]


def test_hook_present_but_unusable_is_an_error_even_inherited(tmp_path: Path) -> None:
    path = write_config(tmp_path, GOOD)
    hook = tmp_path / "hooks" / "nft-set"
    hook.unlink()
    hook.mkdir()
    assert messages(path) == [
        (ERROR, f"hook {hook}: not an executable file: the daemon will not run it")
    ]


def test_each_hook_is_reported_once(tmp_path: Path) -> None:
    body = GOOD + "  web:\n    knock: [7300/udp, 9100/tcp, 8100/udp]\n    open: [443/tcp]\n"
    path = write_config(tmp_path, body)
    (tmp_path / "hooks" / "nft-set").chmod(0o777)
    assert [sev for sev, _ in messages(path)] == [ERROR]


# --- secrets and one-time files --------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "warned"), [(0o600, False), (0o400, False), (0o640, True), (0o604, True)]
)
def test_secret_file_mode(tmp_path: Path, mode: int, warned: bool) -> None:
    key = tmp_path / "totp.key"
    key.write_text("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n")
    key.chmod(mode)
    path = write_config(
        tmp_path, "sequences:\n  t:\n    totp: {secret_file: totp.key}\n    open: [22/tcp]\n"
    )
    expected = f"{key} is readable by group or others: whoever reads it knows the secret"
    assert messages(path) == ([(WARNING, expected)] if warned else [])


def test_one_time_file_mode(tmp_path: Path) -> None:
    once = tmp_path / "once.txt"
    once.write_text("7100:udp 9300:tcp 8200:udp\n")
    once.chmod(0o644)
    path = write_config(tmp_path, "sequences:\n  o:\n    one_time: once.txt\n    open: [22/tcp]\n")
    assert messages(path) == [
        (WARNING, f"{once} is readable by group or others: whoever reads it can read the knocks")
    ]
    once.chmod(0o600)
    assert messages(path) == []


def test_warnings_and_errors_split_the_findings(tmp_path: Path) -> None:
    path = write_config(tmp_path, SHORT + "source: file:k.log\n")
    loaded, marks = config.load_with_marks(path)
    assert [str(loc) for loc, _ in warnings(loaded, marks)] == [f"{path}:4:5"]
    assert [str(loc) for loc, _ in errors(loaded, marks)] == [f"{path}:6:1"]


def test_check_warns_when_rules_and_sequences_do_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "fit.yaml"
    conf.write_text(
        "sequences:\n  ssh:\n    knock: [7000/udp, 22/tcp, 9000/tcp]\n    open: [22/tcp]\n"
        "    hook: /bin/true\n"
    )
    assert cli.main(["check", "--config", str(conf)]) == 0
    assert (
        "firewall: sequence 'ssh': knock port 22/tcp, a protected port" in capsys.readouterr().err
    )
