"""The daemon process on the real kernel: kill -9, hung hooks, bans (issue 5/7, scenarios 6-8)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from e2ecommon import CLIENT4, SECOND4, SSH, WEB, poll, wait_past
from e2elab import E2ELab, MakeLab
from e2esources import KINDS

SSH_PORT, WEB_PORT = 2222, 2223
HANG_ONCE = """#!/bin/sh
# Hangs (in a child, as hooks that wait on something do) while hang.marker
# exists, taking the marker away; otherwise it is the shipped nft-set.
dir=${0%/*}
if [ -e "$dir/hang.marker" ]; then
    rm -f "$dir/hang.marker"
    echo $$ > "$dir/hang.pid"
    sleep 60
fi
exec "$dir/nft-set" "$@"
"""


def hooks_settled(lab: E2ELab) -> dict[str, Any]:
    """The hook counters once no hook is pending."""

    def idle() -> dict[str, Any] | None:
        hooks: dict[str, Any] = lab.status()["hooks"]
        return hooks if hooks["pending"] == [] else None

    return dict(poll(idle, "no pending hook"))


@pytest.mark.parametrize("kind", KINDS)
def test_kill_9_with_a_grant_open_then_restart_after_expiry(make_lab: MakeLab, kind: str) -> None:
    lab = make_lab(kind, open_for="3s")
    lab.knock(*SSH)
    assert lab.connects(SSH_PORT)
    grant = lab.grant("ssh")
    lab.stop_daemon(signal.SIGKILL)
    lab.send(SECOND4, *WEB)  # logged while the daemon is down, well inside web's window
    wait_past(grant["expires"])
    poll(lambda: (CLIENT4, "tcp", SSH_PORT) not in lab.elements(), "the kernel's expiry")
    lab.start_daemon()
    poll(lambda: lab.decisions_logged("close", CLIENT4, "ssh") == 1, "the close at restart")
    assert hooks_settled(lab)["failures"] == 0, "the close hook failed"
    assert lab.refuses(SSH_PORT)
    assert lab.grant("web", src=SECOND4)
    assert lab.connects(WEB_PORT, src=SECOND4), "the knock logged while down did not open"
    lab.stop_daemon(signal.SIGTERM)
    lab.start_daemon()
    lab.barrier()  # everything logged so far was read again or not: acted on once
    assert lab.decisions_logged("open", SECOND4, "web") == 1
    assert lab.decisions_logged("open", CLIENT4, "ssh") == 1
    assert lab.decisions_logged("close", CLIENT4, "ssh") == 1


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_hanging_hook_is_killed_and_other_knocks_still_open_on_time(make_lab: MakeLab) -> None:
    lab = make_lab(open_for="30s", hook_timeout="3s", ssh_hook="hang-once",
                   hooks={"hang-once": HANG_ONCE})  # fmt: skip
    hooks = lab.root / "hooks"
    (hooks / "hang.marker").touch()
    lab.knock(*SSH)
    pid = int(poll(lambda: _read(hooks / "hang.pid"), "the hook to hang"))
    hung = lab.grant("ssh")  # decided, and journaled before its hook ran
    lab.send(SECOND4, *SSH)  # while the first hook hangs
    assert lab.connects(SSH_PORT, src=SECOND4, within=2.0), "blocked behind the hanging hook"
    poll(lambda: lab.status()["hooks"]["failures"] == 1, "the hook timeout", timeout=3 + 5)
    poll(lambda: not group_alive(pid), "the hook's process group to be killed")
    assert "timed out" in lab.log_text()
    assert lab.refuses(SSH_PORT, src=CLIENT4), "the killed open opened anyway"
    wait_past(float(hung["expires"]) - 30 + 1.0)  # completions decide once a second at most
    lab.knock(*SSH)  # refreshes the grant: the hook runs again, and does not hang this time
    assert lab.connects(SSH_PORT, src=CLIENT4, within=2.0), "the next knock did not open on time"


def _read(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


def test_brute_force_bans_until_the_ban_ends(make_lab: MakeLab) -> None:
    lab = make_lab(ban_for="5s")
    for _ in range(3):  # a first step, then a wrong port: one failure each
        lab.knock(SSH[0], "9999/udp")
    ban = poll(lambda: [b for b in lab.status()["bans"] if b["src"] == CLIENT4], "the ban")[0]
    lab.knock(*SSH)
    lab.settle()
    assert time.time() < ban["until"], "the knock came after the ban ended: inconclusive"
    assert lab.no_grant() and lab.refuses(SSH_PORT), "a banned source opened"
    wait_past(ban["until"])
    poll(lambda: lab.status()["bans"] == [], "the ban to end")
    lab.knock(*SSH)
    assert lab.connects(SSH_PORT, within=2.0), "no open after the ban ended"
