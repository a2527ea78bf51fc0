"""Knocks that must open nothing, on the real kernel (issue 5/7, scenario 3).

Each case sends its packets, then waits until the daemon has read every one
of them (`settle`: the count of knocks it reports equals the packets sent),
so "nothing opened" is checked after the daemon saw the whole attempt.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from e2ecommon import CLIENT4, SCAN_BAIT, SECOND4, SSH, wait_past
from e2elab import E2ELab, MakeLab

SSH_PORT, SCAN_PORT = 2222, 2226
STEP_TIMEOUT = 2.0


def wrong_order(lab: E2ELab) -> None:
    lab.knock(SSH[1], SSH[0], SSH[2])


def missing_step(lab: E2ELab) -> None:
    lab.knock(SSH[0], SSH[2])


def step_too_late(lab: E2ELab) -> None:
    lab.knock(SSH[0], SSH[1])
    wait_past(time.time() + STEP_TIMEOUT + 1.0)  # the gap: step_timeout and a second more
    lab.knock(SSH[2])


def split_across_addresses(lab: E2ELab) -> None:
    """The sequence twice, each time its steps alternating between two addresses."""
    for first, other in ((CLIENT4, SECOND4), (SECOND4, CLIENT4)):
        lab.send(first, SSH[0])
        lab.send(other, SSH[1])
        lab.send(first, SSH[2])


BAIT = [int(step.split("/")[0]) for step in SCAN_BAIT]
SCANNED = range(max(BAIT) + 5, min(BAIT) - 6, -1)  # 31 ports: the log limit's burst is 40


def descending_scan(lab: E2ELab) -> None:
    """UDP ports 6425 down to 6395, as fast as a scanner sends: it walks the `scan`
    sequence (6420, 6410, 6400) in order, and hits the closed ports between."""
    lab.send(CLIENT4, *(f"{port}/udp" for port in SCANNED), delay=0)


CASES: dict[str, tuple[Callable[[E2ELab], None], int]] = {
    "wrong-order": (wrong_order, SSH_PORT),
    "missing-step": (missing_step, SSH_PORT),
    "step-too-late": (step_too_late, SSH_PORT),
    "split-across-addresses": (split_across_addresses, SSH_PORT),
    "descending-scan": (descending_scan, SCAN_PORT),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_nothing_opens(make_lab: MakeLab, case: str) -> None:
    send, port = CASES[case]
    lab = make_lab(step_timeout=f"{STEP_TIMEOUT:g}s")
    send(lab)
    lab.settle()
    assert lab.grants() == []
    assert lab.refuses(port, src=CLIENT4) and lab.refuses(port, src=SECOND4)
    assert lab.elements() == set()


def test_descending_scan_opens_when_closed_ports_are_not_logged(make_lab: MakeLab) -> None:
    """The control for the scan case: only the logged closed ports stop it
    (docs/firewall.md, "--no-log-closed: a scan then resets no knock")."""
    lab = make_lab(firewall=["--no-log-closed"])
    descending_scan(lab)
    lab.expected -= len(SCANNED) - len(BAIT)  # only the knock ports are logged now
    assert lab.connects(SCAN_PORT, within=2.0)
    lab.settle()
