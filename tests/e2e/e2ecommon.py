"""What the lab and the tests share: addresses, sequences, the daemon's
configuration, the logknock command under test, and ways to wait.

The configuration has one sequence per scenario family; `CONFIG` takes the
per-test settings of `DEFAULTS`. Ports 2222-2226 are protected (a listener
answers there); every knock port is UDP or TCP in 6400-8600.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INSTALLED_HOOKS = Path("/usr/share/logknock/hooks")
SERVER4, CLIENT4 = "198.18.0.1", "198.18.0.2"
SECOND4 = "198.18.0.3"  # a second address of the client
PROBE4 = "198.18.0.9"  # sends the probe that proves the kernel-to-daemon path works
SERVER6, CLIENT6 = "2001:db8:18::1", "2001:db8:18::2"
PROBE_STEP = "8600/udp"  # web's second step: logged even with --no-log-closed, opens nothing
PROTECTED = (2222, 2223, 2224, 2225, 2226)
SSH = ("7000/udp", "8500/udp", "7600/tcp")
SSH_CLOSE = ("7600/tcp", "8500/udp", "7000/udp")
WEB = ("7100/udp", "8600/udp", "7700/tcp")
TOGGLE = ("7300/udp", "8300/udp", "7900/udp")
ONCE = (("7210/udp", "8210/udp", "7810/udp"), ("7220/udp", "8220/udp", "7820/udp"))
SCAN_BAIT = ("6420/udp", "6410/udp", "6400/udp")  # descending on purpose

CONFIG = """\
source: {source}
prefix: "{prefix}"
state_dir: {root}/state
hooks_dir: {root}/hooks
control_socket: {root}/control
hook_timeout: {hook_timeout}
defaults: {{step_timeout: {step_timeout}, sequence_timeout: 15s, open_for: {open_for}}}
bruteforce: {{max_failures: 3, window: 10m, ban_for: {ban_for}}}
sequences:
  ssh: {{knock: [7000/udp, 8500/udp, 7600/tcp], open: [2222/tcp], hook: {ssh_hook}}}
  ssh-close: {{knock: [7600/tcp, 8500/udp, 7000/udp], closes: ssh}}
  web: {{knock: [7100/udp, 8600/udp, 7700/tcp], open: [2223/tcp], open_for: 60s}}
  toggle: {{knock: [7300/udp, 8300/udp, 7900/udp], open: [2224/tcp], toggle: true}}
  once: {{one_time: once.txt, open: [2225/tcp]}}
  scan: {{knock: [6420/udp, 6410/udp, 6400/udp], open: [2226/tcp]}}
"""
DEFAULTS = {
    "hook_timeout": "2s",
    "step_timeout": "5s",
    "open_for": "3s",
    "ban_for": "1h",
    "ssh_hook": "nft-set",
}


def logknock_argv() -> list[str]:
    """The logknock command: $LOGKNOCK (split like a shell would), else `python -m logknock`."""
    named = os.environ.get("LOGKNOCK")
    return shlex.split(named) if named else [sys.executable, "-m", "logknock"]


def shipped_hook(name: str = "nft-set") -> Path:
    """The installed hook when LOGKNOCK names an installed logknock, else the checkout's."""
    installed = INSTALLED_HOOKS / name
    if os.environ.get("LOGKNOCK") and installed.exists():
        return installed
    return ROOT / "hooks" / name


def poll(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """`check()`'s first true value; AssertionError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def wait_past(moment: float) -> None:
    """Wait until the wall clock is past `moment` (a deadline the daemon works to)."""
    while (left := moment - time.time()) > 0:
        time.sleep(min(left + 0.01, 1.0))
