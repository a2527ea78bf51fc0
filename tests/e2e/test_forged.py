"""Forged lines with our prefix open nothing, on every source kind (issue 5/7, scenario 5).

Each forgery (e2eforge.py) writes a valid-looking `ssh` sequence for the
client's address, and the test first proves that the lines arrived where the
source reads: in the journal (not with `_TRANSPORT=kernel` and facility 0),
at rsyslog (through an input other than imklog, and not in the kernel-only
file), or in /dev/kmsg (with a facility other than kern). Then a genuine
knock from another address opens, which shows the daemon read past them.
"""

from __future__ import annotations

import pytest
from e2ecommon import CLIENT4, SECOND4, SSH
from e2eforge import FORGE, FORGERIES_FOR, Arrival, forged_lines
from e2elab import MakeLab
from e2esources import KINDS

SSH_PORT = 2222
CASES = [(kind, forgery) for kind in KINDS for forgery in FORGERIES_FOR[kind]]
REFUSED_BECAUSE = {  # how a forged copy arrives: never the way the kernel's lines do
    "journal": lambda how: how != "_TRANSPORT=kernel SYSLOG_FACILITY=0",
    "file": lambda how: how != "input imklog",
    "kmsg": lambda how: int(how.removeprefix("pri ")) >= 8,
}


@pytest.mark.parametrize(("kind", "forgery"), CASES)
def test_forged_lines_open_nothing(make_lab: MakeLab, kind: str, forgery: str) -> None:
    lab = make_lab(kind)
    with Arrival(lab) as arrival:
        FORGE[forgery](lab, forged_lines(lab.prefix))
        arrived = arrival.prove(count=len(SSH))
    assert all(map(REFUSED_BECAUSE[kind], arrived)), arrived
    lab.send(SECOND4, *SSH)  # genuine, and logged after the forged lines
    assert lab.connects(SSH_PORT, src=SECOND4), "the genuine knock after the forgery"
    lab.settle()  # the forged lines never counted as knocks
    assert [g["src"] for g in lab.grants()] == [SECOND4]
    assert lab.refuses(SSH_PORT, src=CLIENT4)
    assert {element[0] for element in lab.elements()} == {SECOND4}
    if lab.rsyslog is not None:
        kernel_file = lab.rsyslog.kernel_log
        assert len(lab.rsyslog.lines(kernel_file, f"SRC={SECOND4} ")) == len(SSH)
        assert lab.rsyslog.lines(kernel_file, f"SRC={CLIENT4} ") == []
