"""Real hook subprocesses: argv, environment, failure, timeout, leftovers.

The suite runs this file twice: with the sh the venv has (2.x) and with
Debian 12's sh 1.14 (scripts/test puts it first on PYTHONPATH), because the
two differ in defaults and return types and the runner must not.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sh

from logknock import hooks
from logknock.hooks import hook_environment, hook_problem, run_hook
from logknock.models import Action, Decision

RECORDER = """#!/bin/sh
out="$(dirname "$0")/record.json"
python3 - "$@" > "$out" <<'PY'
import json, os, sys
print(json.dumps({"argv": sys.argv[1:], "env": dict(os.environ), "pgid": os.getpgid(0)}))
PY
echo "to stdout"; echo "to stderr" >&2
"""


def make_hook(tmp_path: Path, body: str, name: str = "hook") -> Path:
    path = tmp_path / name
    path.write_text(body)
    path.chmod(0o755)
    return path


def decision(action: Action = Action.OPEN, src: str = "2001:db8::7") -> Decision:
    return Decision(1000.0, action, ipaddress.ip_address(src), "ssh", ("22/tcp", "443/tcp"), 1030.5)


@pytest.fixture(params=["pidfd", "polled"])
def waiting(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """How the runner waits for a hook: on a pidfd, or (where there is none) sh's polling."""
    if request.param == "pidfd":

        def no_polling(proc: Any, timeout: float) -> bool:
            raise AssertionError("waited by polling although a pidfd was there")

        monkeypatch.setattr(hooks, "_polled", no_polling)
    else:

        def no_pidfd(pid: int) -> int:
            raise OSError(errno.ENOSYS, "pidfd_open")

        monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    yield request.param


def test_sh_version_is_reported() -> None:
    print(f"sh {sh.__version__}")
    assert sh.__version__.split(".")[0] in ("1", "2")


def test_hook_gets_action_argv_and_only_our_environment(tmp_path: Path) -> None:
    hook = make_hook(tmp_path, RECORDER)
    os.environ["LOGKNOCK_TEST_LEAK"] = "secret"
    try:
        result = run_hook(hook, decision(), now=1000.0, timeout=10)
    finally:
        del os.environ["LOGKNOCK_TEST_LEAK"]
    record = json.loads((tmp_path / "record.json").read_text())
    assert result.ok and record["argv"] == ["open"]
    env = record["env"]
    assert env["LOGKNOCK_SRC"] == "2001:db8::7" and env["LOGKNOCK_FAMILY"] == "6"
    assert env["LOGKNOCK_PORTS"] == "22/tcp 443/tcp" and env["LOGKNOCK_SEQUENCE"] == "ssh"
    assert env["LOGKNOCK_TIMEOUT"] == "31" and env["LOGKNOCK_EXPIRES"] == "1031"
    assert "LOGKNOCK_TEST_LEAK" not in env and "HOME" not in env
    assert "to stdout" in result.output and "to stderr" in result.output


def test_hook_runs_in_its_own_process_group(tmp_path: Path) -> None:
    hook = make_hook(tmp_path, RECORDER)
    run_hook(hook, decision(), now=1000.0, timeout=10)
    assert json.loads((tmp_path / "record.json").read_text())["pgid"] != os.getpgid(0)


def test_environment_values_come_from_objects() -> None:
    env = hook_environment(decision(Action.CLOSE, "198.51.100.7"), now=1000.0)
    assert env["LOGKNOCK_ACTION"] == "close" and env["LOGKNOCK_FAMILY"] == "4"
    assert set(env) == {
        "PATH", "LANG", "LOGKNOCK_ACTION", "LOGKNOCK_SRC", "LOGKNOCK_FAMILY",
        "LOGKNOCK_SEQUENCE", "LOGKNOCK_PORTS", "LOGKNOCK_EXPIRES", "LOGKNOCK_TIMEOUT",
    }  # fmt: skip


def test_failing_hook_reports_its_exit_code(tmp_path: Path, waiting: str) -> None:
    hook = make_hook(tmp_path, "#!/bin/sh\necho broken >&2\nexit 3\n")
    result = run_hook(hook, decision(), now=1000.0, timeout=10)
    assert (result.exit_code, result.timed_out, result.ok) == (3, False, False)
    assert "broken" in result.output


def pids_of(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", marker], check=False, capture_output=True, text=True)
    return found.stdout.split()


def test_hanging_hook_is_killed_with_its_children(tmp_path: Path, waiting: str) -> None:
    marker = f"sleep 3{os.getpid() % 1000}7"
    hook = make_hook(tmp_path, f"#!/bin/sh\n{marker} &\n{marker}\n")
    started = time.monotonic()
    result = run_hook(hook, decision(), now=1000.0, timeout=0.5)
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - started < 30  # generous: it must not wait for the sleep
    assert pids_of(marker) == []


def test_leftover_children_of_a_finished_hook_are_killed(tmp_path: Path, waiting: str) -> None:
    marker = f"sleep 4{os.getpid() % 1000}1"
    hook = make_hook(tmp_path, f"#!/bin/sh\n{marker} &\nexit 0\n")
    result = run_hook(hook, decision(), now=1000.0, timeout=10)
    assert result.ok and pids_of(marker) == []


def test_missing_hook_is_a_result_not_an_exception(tmp_path: Path) -> None:
    result = run_hook(tmp_path / "nope", decision(), now=1000.0, timeout=1)
    assert result.exit_code is None and result.error


def test_a_hook_killed_by_a_signal_reports_it(tmp_path: Path, waiting: str) -> None:
    hook = make_hook(tmp_path, "#!/bin/sh\nkill -9 $$\n")
    result = run_hook(hook, decision(), now=1000.0, timeout=10)
    assert (result.exit_code, result.timed_out, result.ok) == (-9, False, False)


def test_stdin_is_dev_null(tmp_path: Path) -> None:
    hook = make_hook(tmp_path, "#!/bin/sh\ncat\nreadlink /proc/$$/fd/0\n")
    result = run_hook(hook, decision(), now=1000.0, timeout=10)
    assert result.ok and result.output == "/dev/null"


def test_a_hook_changed_or_removed_after_a_run_is_taken_as_it_is_now(tmp_path: Path) -> None:
    hook = make_hook(tmp_path, "#!/bin/sh\necho first\n")
    assert run_hook(hook, decision(), now=1000.0, timeout=10).output == "first"
    make_hook(tmp_path, "#!/bin/sh\necho second\n")
    assert run_hook(hook, decision(), now=1000.0, timeout=10).output == "second"
    hook.unlink()
    gone = run_hook(hook, decision(), now=1000.0, timeout=10)
    assert gone.exit_code is None and gone.error


def test_huge_output_is_truncated(tmp_path: Path) -> None:
    hook = make_hook(tmp_path, "#!/bin/sh\nhead -c 1000000 /dev/zero | tr '\\0' x\n")
    result = run_hook(hook, decision(), now=1000.0, timeout=10)
    assert result.ok and len(result.output) < 10_000


@pytest.mark.parametrize(
    ("mode", "uid", "problem"),
    [
        (0o755, 0, None),
        (0o775, 0, "writable by group"),
        (0o757, 0, "writable by group or others"),
        (0o644, 0, "not an executable"),
        (0o755, 4242, "owned by uid 4242"),
    ],
)
def test_hook_permissions_are_checked(
    tmp_path: Path, mode: int, uid: int, problem: str | None
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    hook = make_hook(tmp_path, "#!/bin/sh\n")
    os.chown(hook, uid, 0)
    hook.chmod(mode)
    found = hook_problem(hook, (0,))
    assert (found is None) if problem is None else (found is not None and problem in found)
