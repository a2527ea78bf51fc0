"""Hooks: executables that carry out a decision, run without a shell.

A hook gets argv `[action]` and an environment built only from validated
objects (an `ipaddress` value rendered back to text, integers, configured
names): `LOGKNOCK_ACTION`, `LOGKNOCK_SRC`, `LOGKNOCK_FAMILY`,
`LOGKNOCK_SEQUENCE`, `LOGKNOCK_PORTS`, `LOGKNOCK_TIMEOUT`, `LOGKNOCK_EXPIRES`
and a fixed `PATH`. Nothing from a log line is ever interpolated into a
command string.

Hooks run through `sh` (the library). sh 1.14 (Debian 12) and sh 2.x differ in
defaults and return types, so every keyword is given explicitly, only keywords
both versions know are used, and the command always runs in the background
(`_bg=True` returns a `RunningCommand` in both) in a new session, so that a
timeout can kill the hook's whole process group.

Starting a hook is on the path from a knock to its port opening, so the
parent does little around sh's fork: the command is resolved and baked with
its fixed keywords once per path, stdin is /dev/null (a file: no pipe and no
writer thread), and the end of the hook is awaited on a pidfd (exact, where
sh's `wait(timeout=)` looks every 100 ms and holds a worker that long).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import select
import signal
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .models import Decision
from .schema import Config

HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OUTPUT_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class HookResult:
    hook: str
    action: str
    exit_code: int | None  # None when it did not finish (timeout) or could not start
    timed_out: bool
    output: str  # stdout and stderr, truncated to OUTPUT_LIMIT characters each
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def hook_environment(decision: Decision, now: float) -> dict[str, str]:
    """The hook's whole environment: nothing inherited, nothing from log text."""
    env = {
        "PATH": HOOK_PATH,
        "LANG": "C.UTF-8",
        "LOGKNOCK_ACTION": decision.action.value,
        "LOGKNOCK_SRC": str(decision.src),
        "LOGKNOCK_FAMILY": str(decision.src.version),
        "LOGKNOCK_SEQUENCE": decision.sequence or "",
        "LOGKNOCK_PORTS": " ".join(decision.ports),
    }
    if decision.expires is not None:
        env["LOGKNOCK_EXPIRES"] = str(math.ceil(decision.expires))
        env["LOGKNOCK_TIMEOUT"] = str(max(1, math.ceil(decision.expires - now)))
    return env


def resolve_hook(name: str, hooks_dir: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else Path(hooks_dir) / name


def hook_problem(path: Path, allowed_uids: tuple[int, ...] = (0,)) -> str | None:
    """Why a hook must not be run (sshd StrictModes style), or None."""
    try:
        info = path.stat()
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if not stat.S_ISREG(info.st_mode) or not os.access(path, os.X_OK):
        return f"{path}: not an executable file"
    if info.st_uid not in allowed_uids:
        return f"{path}: owned by uid {info.st_uid}, must be root or the service user"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path}: writable by group or others"
    return None


class _Output:
    """Collects a bounded amount of a hook's output from sh's callbacks."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def __call__(self, chunk: str | bytes) -> None:
        text = chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else chunk
        if self.size < OUTPUT_LIMIT:
            self.parts.append(text[: OUTPUT_LIMIT - self.size])
            self.size += len(text)

    def text(self) -> str:
        joined = "".join(self.parts)
        return joined + ("…" if self.size > OUTPUT_LIMIT else "")


def run_hook(path: Path, decision: Decision, now: float, timeout: float) -> HookResult:
    """Run one hook to completion or timeout; never raises for the hook's failures."""
    import sh  # here, not at the top: `sh` costs ~50 ms of start-up every command would pay

    started, out, err = time.monotonic(), _Output(), _Output()
    try:
        proc = _start(path, decision, now, out, err)
    except (OSError, sh.CommandNotFound, sh.ForkException) as exc:
        return HookResult(str(path), decision.action.value, None, False, "", 0.0, str(exc))
    code, timed_out = _wait(proc, timeout)
    output = "\n".join(part for part in (out.text().strip(), err.text().strip()) if part)
    seconds = time.monotonic() - started
    return HookResult(str(path), decision.action.value, code, timed_out, output, seconds)


OPTIONS: dict[str, Any] = {
    "_bg": True,
    "_bg_exc": False,
    "_new_session": True,
    "_tty_in": False,
    "_tty_out": False,
    "_cwd": "/",
    "_ok_code": list(range(256)),
}


@functools.lru_cache(maxsize=64)
def _command(path: str) -> Any:
    """`path` as an sh command with the fixed keywords baked in (resolved once)."""
    import sh

    return sh.Command(path).bake(**OPTIONS)


def _start(path: Path, decision: Decision, now: float, out: _Output, err: _Output) -> Any:
    command = _command(str(path))
    with open(os.devnull, "rb") as stdin:  # sh hands the child a copy of the descriptor
        return command(
            decision.action.value,
            _env=hook_environment(decision, now),
            _in=stdin,
            _out=out,
            _err=err,
        )


def _wait(proc: Any, timeout: float) -> tuple[int | None, bool]:
    """Wait for the hook itself (not its output, which a child may hold open),
    then kill what is left of its group and reap it: (exit code, timed out)."""
    ended = _ended_within(proc, timeout)
    _kill_group(proc)
    if not ended:
        return None, True
    return int(proc.process.exit_code), False  # negative: the signal that killed it


def _ended_within(proc: Any, timeout: float) -> bool:
    """True when the hook's process ended within `timeout` seconds."""
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return True  # sh's output thread reaped it already
    except OSError:  # no pidfd here (Linux before 5.3, a seccomp filter)
        return _polled(proc, timeout)
    try:
        # Reaped before the pidfd was opened? Then the pid may name another process
        # (only once pid numbers wrapped around): trust sh's exit code instead.
        if proc.process.exit_code is not None:
            return True
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0.0, timeout) * 1000))
    finally:
        os.close(fd)


def _polled(proc: Any, timeout: float) -> bool:
    import sh

    try:
        proc.wait(timeout=timeout)
    except sh.TimeoutException:
        return False
    except sh.ErrorReturnCode:  # killed by a signal: it ended
        pass
    return True


def _kill_group(proc: Any) -> None:
    """Kill whatever is left of the hook's process group, then reap it and
    collect its output (a leftover child holding stdout open would block)."""
    import sh

    # A new session: the group id is the hook's pid, even after it exited.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(sh.ErrorReturnCode, sh.TimeoutException):
        proc.process.wait()


def hook_for(config: Config, decision: Decision) -> Path | None:
    """The hook configured for a decision's sequence, or None (bans, closes: sequences)."""
    sequence = config.sequence(decision.sequence) if decision.sequence else None
    if sequence is None or sequence.hook is None:
        return None
    return resolve_hook(sequence.hook, config.hooks_dir)


def run_checked(path: Path, decision: Decision, now: float, timeout: float) -> HookResult:
    """Run a hook that passes `hook_problem`; a refused one is a failed result."""
    problem = hook_problem(path, (0, os.geteuid()))
    if problem:
        return HookResult(str(path), decision.action.value, None, False, "", 0.0, problem)
    return run_hook(path, decision, now, timeout)


class HookRunner:
    """Runs the hook configured for each decision (synchronously, for replay)."""

    def __init__(self, config: Config, log: Callable[[str], None] = print) -> None:
        self.config = config
        self.log = log

    def run_now(self, decision: Decision) -> HookResult | None:
        path = hook_for(self.config, decision)
        if path is None:
            return None
        result = run_checked(path, decision, decision.at, self.config.hook_timeout)
        if not result.ok:
            self.log(f"hook {path} {decision.action.value} failed: {result}")
        return result
