"""The benchmarks' own correctness: genlog writes the same log for the same seed,
and a small replay opens exactly what genlog says it should (no timing here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from testpaths import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import genlog
import measure

CONFIG = str(ROOT / "bench" / "configs" / "throughput.yaml")
SMALL = {"lines": 3000, "knocks": 0.3}


def replay(log: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "logknock", "replay", "--json", "--config", CONFIG, str(log)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_the_same_seed_writes_the_same_log(tmp_path: Path) -> None:
    first, again, other = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "c.log"
    spec = genlog.Spec(**SMALL, seed=7)
    expected = genlog.generate(first, spec, CONFIG)
    assert genlog.generate(again, spec, CONFIG) == expected
    assert first.read_bytes() == again.read_bytes()
    genlog.generate(other, genlog.Spec(**SMALL, seed=8), CONFIG)
    assert other.read_bytes() != first.read_bytes()


@pytest.mark.parametrize("fmt", genlog.FORMATS)
def test_replay_opens_exactly_the_expected_sequences(tmp_path: Path, fmt: str) -> None:
    log = tmp_path / "mixed.log"
    expected = genlog.generate(log, genlog.Spec(**SMALL, fmt=fmt), CONFIG)
    assert expected["items"]["valid"] > 10 and set(genlog.DECOYS) <= set(expected["items"])
    assert len(log.read_text().splitlines()) == SMALL["lines"] == expected["lines"]
    done = replay(log)
    assert done.returncode == 0, done.stderr
    assert measure.replay_openings(done.stdout) == measure.Counter(expected["openings"])
    assert f"{SMALL['lines']} lines" in done.stderr


def test_a_flood_hides_no_real_sequence(tmp_path: Path) -> None:
    log = tmp_path / "flood.log"
    expected = genlog.generate(log, genlog.Spec(flood=2000, real=5, window=2.0), CONFIG)
    assert len(expected["openings"]) == 5 and expected["lines"] >= 2015
    done = replay(log)
    assert measure.replay_openings(done.stdout) == measure.Counter(expected["openings"])


def test_the_simple_baseline_finds_the_same_openings(tmp_path: Path) -> None:
    log = tmp_path / "mixed.log"
    expected = genlog.generate(log, genlog.Spec(**SMALL, fmt="traditional"), CONFIG)
    command = [sys.executable, str(ROOT / "bench" / "simple_impl.py"), CONFIG, str(log)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    assert measure.simple_openings(done.stdout) == measure.Counter(expected["openings"])


def test_every_kernel_line_is_written_as_the_kernel_prints_it(tmp_path: Path) -> None:
    log = tmp_path / "journal.log"
    genlog.generate(log, genlog.Spec(**SMALL, fmt="journal"), CONFIG)
    messages = [json.loads(line)["MESSAGE"] for line in log.read_text().splitlines()]
    knocks = [m for m in messages if m.startswith("logknock: IN=")]
    assert knocks and all(m.endswith(" ") for m in knocks)
    v6 = [m for m in knocks if "SRC=2001:" in m]
    assert v6 and all("SRC=2001:0db8:" in m for m in v6)  # uncompressed, as the kernel prints
