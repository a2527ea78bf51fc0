"""Knocks on the real kernel open the protected port, and grants end (issue 5/7, scenarios 1 and 4).

The ruleset drops the protected ports for everyone without a grant, so a
connection attempt gets no answer at all until the daemon's hook has added
the client's element to the grant set.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
from e2ecommon import CLIENT4, ONCE, SSH, SSH_CLOSE, TOGGLE, poll, wait_past
from e2elab import MakeLab
from e2esources import KINDS

SSH_PORT, TOGGLE_PORT, ONCE_PORT = 2222, 2224, 2225


def completed_at(grant: dict[str, Any], open_for: float) -> float:
    """When the knock that opened `grant` completed (its expiry minus open_for)."""
    return float(grant["expires"]) - open_for


@pytest.mark.parametrize("kind", KINDS)
def test_knock_opens_the_port_until_open_for_ends(make_lab: MakeLab, kind: str) -> None:
    lab = make_lab(kind, open_for="3s")
    assert lab.refuses(SSH_PORT), "the protected port answers before any knock"
    lab.knock(*SSH)
    assert lab.connects(SSH_PORT, within=2.0), "no connection within 2 s of the knock"
    grant = lab.grant("ssh")
    assert (CLIENT4, "tcp", SSH_PORT) in lab.elements()
    wait_past(grant["expires"])
    poll(lab.no_grant, "the daemon to close the grant at its expiry")
    assert lab.refuses(SSH_PORT), "a new connection is accepted after open_for"
    assert (CLIENT4, "tcp", SSH_PORT) not in lab.elements()
    assert lab.decisions_logged("close", CLIENT4, "ssh") == 1
    hooks = lab.status()["hooks"]
    assert (hooks["failures"], hooks["pending"]) == (0, [])


def test_close_sequence_closes(make_lab: MakeLab) -> None:
    lab = make_lab(open_for="1h")
    lab.knock(*SSH)
    assert lab.connects(SSH_PORT)
    grant = lab.grant("ssh")
    # The close knock starts on the open knock's last port: a knock there within
    # duplicate_window (1 s) of it would be taken for a duplicate.
    wait_past(completed_at(grant, 3600) + 1.0)
    lab.knock(*SSH_CLOSE)
    poll(lab.no_grant, "the close sequence to close the grant")
    assert lab.refuses(SSH_PORT)
    assert (CLIENT4, "tcp", SSH_PORT) not in lab.elements()


def test_toggle_opens_then_closes(make_lab: MakeLab) -> None:
    lab = make_lab(open_for="1h")
    lab.knock(*TOGGLE)
    assert lab.connects(TOGGLE_PORT)
    grant = lab.grant("toggle")
    wait_past(completed_at(grant, 3600) + 1.0)  # one decision a second at most
    lab.knock(*TOGGLE)
    poll(lab.no_grant, "the second toggle knock to close")
    assert lab.refuses(TOGGLE_PORT)
    assert lab.decisions_logged("open", CLIENT4, "toggle") == 1
    assert lab.decisions_logged("close", CLIENT4, "toggle") == 1


def test_one_time_sequence_works_once_also_after_a_restart(make_lab: MakeLab) -> None:
    lab = make_lab(open_for="1h")
    lab.knock(*ONCE[0])
    assert lab.connects(ONCE_PORT)
    grant = lab.grant("once")
    lab.control("close", CLIENT4, "--sequence", "once")
    poll(lab.no_grant, "the grant closed by hand")
    wait_past(completed_at(grant, 3600) + 1.0)
    lab.knock(*ONCE[0])  # used: nothing
    lab.settle()
    assert lab.no_grant() and lab.refuses(ONCE_PORT)
    lab.stop_daemon(signal.SIGKILL)  # the used line must be in the state file already
    lab.start_daemon()
    lab.knock(*ONCE[0])
    lab.barrier()
    assert lab.no_grant() and lab.refuses(ONCE_PORT)
    assert lab.decisions_logged("open", CLIENT4, "once") == 1
    lab.knock(*ONCE[1])  # an unused line still opens
    assert lab.connects(ONCE_PORT)
