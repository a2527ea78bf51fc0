"""`logknock replay` on several CPUs says exactly what it says on one.

With children scanning blocks of the file and reading knock lines through the
fast lane (`Pipeline.digest`), every decision, its order and every counter
must be what one process reading the whole file gives: on generated logs of
each format and on lines built to take the other ways (rejected, garbage,
too long, not a knock, a record with no time of its own)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pytest
from testpaths import ROOT

from logknock import cmd_replay
from logknock.sources import replay

sys.path.insert(0, str(ROOT / "bench"))

import genlog

CONFIG = str(ROOT / "bench" / "configs" / "throughput.yaml")
RFC = "2026-06-15T00:01:07.5+00:00 gw kernel: [83392.966220] "
ODD_LINES = [
    RFC + "xlogknock: IN=eth0 OUT= SRC=198.18.0.9 DST=198.18.0.1 PROTO=UDP SPT=1 DPT=2 LEN=8 ",
    RFC + "logknock: IN=eth0 OUT= SRC=198.18.0.9 DST=198.18.0.1 LEN=28 PROTO=ICMP TYPE=8 ",
    RFC + "logknock: IN=eth0 OUT= SRC=198.18.0.9 DST=198.18.0.1 LEN=20 TOS=0x00 PREC=0x00 "
    "TTL=64 ID=1 PROTO=UDP SPT=1 DPT=70000 LEN=8 ",
    RFC + "logknock: IN=eth0 OUT= SRC=198.18.0.9 DST=198.18.0.1 LEN=20 TOS=0x00 PRE",
    "logknock: IN=eth0 OUT= SRC=198.18.0.9 DST=198.18.0.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 "
    "ID=4321 PROTO=UDP SPT=1 DPT=2 LEN=8 ",  # a knock, at the newest time seen
    RFC + "logknock: " + "A" * 100_000,
    RFC + "logknock: \udcff\udcfe IN=",
]


def run(
    log: Path, workers: int, kernel_only: bool, capsys: pytest.CaptureFixture[str]
) -> tuple[str, str]:
    """stdout and the summary (without its timing) of one replay on `workers` CPUs."""
    args = argparse.Namespace(
        files=[str(log)], config=CONFIG, json=True, run_hooks=False, kernel_only=kernel_only
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cmd_replay, "_cpus", lambda: workers)
        assert cmd_replay.run(args) == 0
    out, err = capsys.readouterr()
    return out, re.sub(r" in [0-9.]+s \([0-9,]+ lines/s\)", "", err)


@pytest.mark.parametrize("kernel_only", [False, True], ids=["any-origin", "kernel-only"])
@pytest.mark.parametrize("fmt", genlog.FORMATS)
def test_children_change_no_decision_and_no_count(
    tmp_path: Path,
    fmt: str,
    kernel_only: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = tmp_path / "mixed.log"
    expected = genlog.generate(log, genlog.Spec(lines=4000, knocks=0.5, fmt=fmt, seed=5), CONFIG)
    with log.open("ab") as out:  # the odd lines after the generated ones, noise between
        for n, line in enumerate(ODD_LINES * 20):
            out.write(line.encode("utf-8", "surrogateescape") + b"\n")
            out.write(b"noise %d\n" % n)
    monkeypatch.setattr(replay, "SPLIT_MIN", 0)
    monkeypatch.setattr(replay, "BLOCK", 8192)  # about a hundred blocks, lines cut at every edge
    monkeypatch.setattr(replay, "_may_fork", lambda: True)  # other tests may leave threads
    one = run(log, 1, kernel_only, capsys)
    assert run(log, 2, kernel_only, capsys) == one
    assert run(log, 3, kernel_only, capsys) == one
    opened = [json.loads(line) for line in one[0].splitlines()]
    proven = not kernel_only or fmt == "journal"  # only journal entries prove the kernel
    assert sorted(f"{d['sequence']} {d['src']}" for d in opened if d["action"] == "open") == (
        sorted(expected["openings"]) if proven else []
    )
    assert "rejected" in one[1]
