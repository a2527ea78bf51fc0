"""A real `logknock run` process for tests, fed through a kernel-only log file.

The daemon reads a file source marked `trust: kernel-only`; the test writes
LOG lines into it as rsyslog would (RFC 3339 time, `kernel:` tag), so every
knock's time is controlled. Hooks are real scripts that append one JSON line
per run to `hooks.log`. The kernel-path tests live in tests/e2e.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from logknock.control import call
from logknock.errors import LogknockError

RECORDER = """#!/bin/sh
dir=$(dirname "$0")
if [ -e "$dir/hang-$1" ]; then touch "$dir/hung-$1"; sleep 60; fi
if [ -e "$dir/fail-$1" ]; then echo "failing on purpose" >&2; exit 7; fi
printf '{"action":"%s","src":"%s","sequence":"%s","ports":"%s","timeout":"%s","pid":%s}\\n' \\
  "$1" "$LOGKNOCK_SRC" "$LOGKNOCK_SEQUENCE" "$LOGKNOCK_PORTS" "${LOGKNOCK_TIMEOUT:-}" $$ \\
  >> "$dir/hooks.log"
"""

CONFIG = """\
source:
  - file: {log}
    trust: kernel-only
prefix: "logknock: "
state_dir: {state}
hooks_dir: {hooks}
control_socket: {socket}
hook_timeout: {hook_timeout}
defaults: {{step_timeout: 5s, sequence_timeout: 15s, open_for: {open_for}, hook: recorder}}
bruteforce: {{max_failures: 3, window: 10m, ban_for: {ban_for}}}
sequences:
  ssh:
    knock: [7000/udp, 8500/udp, 7600/tcp]
    open: [22/tcp]
  ssh-close:
    knock: [7600/tcp, 8500/udp, 7000/udp]
    closes: ssh
"""


def wait_for(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def log_line(src: str, port: int, proto: str = "UDP", at: float | None = None) -> str:
    stamp = datetime.fromtimestamp(time.time() if at is None else at, UTC).isoformat()
    ip = (
        f"SRC={src} DST=198.18.0.1 LEN=29 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF "
        if ":" not in src
        else f"SRC={src} DST=2001:0db8:0000:0000:0000:0000:0000:0001 LEN=49 TC=0 HOPLIMIT=64 "
        "FLOWLBL=0 "
    )
    l4 = (
        f"PROTO=UDP SPT=40000 DPT={port} LEN=9 "
        if proto == "UDP"
        else f"PROTO=TCP SPT=40000 DPT={port} WINDOW=64240 RES=0x00 SYN URGP=0 "
    )
    return f"{stamp} host kernel: logknock: IN=veth0 OUT= MAC= {ip}{l4}"


class DaemonLab:
    def __init__(self, root: Path, **settings: str) -> None:
        self.root = root
        self.log = root / "kernel.log"
        self.hooks = root / "hooks"
        self.socket = str(root / "control")
        self.config = root / "logknock.yaml"
        self.proc: subprocess.Popen[bytes] | None = None
        self.hooks.mkdir(mode=0o755)
        recorder = self.hooks / "recorder"
        recorder.write_text(RECORDER)
        recorder.chmod(0o755)
        self.log.touch()
        self.write_config(**settings)

    def write_config(self, **settings: str) -> None:
        values = {"open_for": "3s", "hook_timeout": "2s", "ban_for": "1h"} | settings
        paths = {"log": self.log, "state": self.root / "state", "hooks": self.hooks}
        self.config.write_text(CONFIG.format(socket=self.socket, **paths, **values))

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFY_")}
        with (self.root / "daemon.err").open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "logknock", "run", "--config", str(self.config)],
                stderr=err,
                env=env,
            )
        wait_for(self._ready, "the daemon's control socket")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited {self.proc.returncode}: {self.stderr()}")
        try:  # up, and the file source has opened its file (it starts at the end)
            source = self.status()["sources"][f"file:{self.log}"]
        except (OSError, LogknockError, KeyError):  # the socket is not there yet
            return False
        return source["position"] is not None

    def stderr(self) -> str:
        return (self.root / "daemon.err").read_text()

    def status(self) -> dict[str, Any]:
        return call(self.socket, {"cmd": "status"}, timeout=5)

    def knock(self, src: str, *steps: tuple[int, str], at: float | None = None) -> None:
        with self.log.open("a") as f:
            for port, proto in steps:
                f.write(log_line(src, port, proto, at) + "\n")

    def hook_runs(self) -> list[dict[str, Any]]:
        path = self.hooks / "hooks.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.proc = None
        return code

    def state(self) -> dict[str, Any]:
        path = self.root / "state" / "state.json"
        return dict(json.loads(path.read_text())) if path.exists() else {"pending": []}

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


SSH = ((7000, "UDP"), (8500, "UDP"), (7600, "TCP"))
CLOSE = ((7600, "TCP"), (8500, "UDP"), (7000, "UDP"))
