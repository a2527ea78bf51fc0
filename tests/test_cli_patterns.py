"""`logknock patterns list|test|match|digest` through the real command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from testpaths import FIXTURES, PATTERNS

from logknock.cli import main

KNOCK = (
    "4,1234,83325088,-;logknock: IN=eth0 OUT= MAC= SRC=198.51.100.7 DST=203.0.113.5 LEN=28 "
    "TOS=0x00 PREC=0x00 TTL=64 ID=54321 DF PROTO=UDP SPT=40000 DPT=7000 LEN=8 "
)
FORGED = (
    '{"_TRANSPORT": "syslog", "SYSLOG_IDENTIFIER": "kernel", "SYSLOG_FACILITY": "0", '
    '"MESSAGE": "logknock: IN=eth0 OUT= MAC= SRC=198.51.100.7 DST=203.0.113.5 LEN=28 TOS=0x00 '
    'PREC=0x00 TTL=64 ID=54321 DF PROTO=UDP SPT=40000 DPT=7000 LEN=8 "}'
)
HOSTILE_LINES = [
    KNOCK.encode(),
    FORGED.encode(),
    b"\xff\xfe garbage \x00 logknock: IN=",
    b"logknock: " + b"A" * 200_000,
    b"",
    b"Nov 21 05:04:17 host kernel: [UFW BLOCK] IN=eth0 OUT= MAC= SRC=198.51.100.7 "
    b"DST=203.0.113.5 LEN=28 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=UDP SPT=1 DPT=2 LEN=8 ",
    KNOCK.replace("DPT=7000", "DPT=7000 SRC=1.2.3.4").encode(),
]


def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "logknock", *args], input=stdin, capture_output=True, check=False
    )


def test_match_json_gives_one_object_per_line_in_order(tmp_path: Path) -> None:
    log = tmp_path / "mixed.log"
    log.write_bytes(b"\n".join(HOSTILE_LINES) + b"\n")
    done = run_cli("patterns", "match", "--json", str(log))
    assert done.returncode == 0, done.stderr
    objects = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["n"] for o in objects] == list(range(1, len(HOSTILE_LINES) + 1))
    first, forged, garbage, huge, empty, ufw, repeated = objects
    assert first["matched"] and first["origin"] == "kernel" and first["pack"] == "netfilter@1.0.0"
    assert first["event"] == {
        "prefix": "logknock: ", "in": "eth0", "out": "", "src": "198.51.100.7",
        "dst": "203.0.113.5", "proto": "UDP", "spt": 40000, "dpt": 7000, "family": 4,
    }  # fmt: skip
    assert forged["origin"] == "not-kernel" and forged["event"] is None
    assert garbage["reason"].startswith("invalid-utf8")
    assert huge["reason"].startswith("too-long")
    assert ufw["reason"].startswith("no-prefix")  # the prefilter: no regex ever ran
    assert repeated["reason"].startswith("repeated-key")
    assert all(o["event"] is None and o["reason"] for o in (garbage, huge, empty, ufw, repeated))


def test_match_reads_standard_input_and_takes_a_prefix() -> None:
    line = KNOCK.replace("logknock: ", "[UFW BLOCK] ").encode()
    done = run_cli("patterns", "match", "--json", "--prefix", "[UFW BLOCK] ", "-", stdin=line)
    assert json.loads(done.stdout)["event"]["prefix"] == "[UFW BLOCK] "


def test_match_text_output_says_a_text_file_cannot_prove_the_kernel(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_text(
        "Nov 21 05:04:17 host kernel: [ 83.3] logknock: IN=eth0 OUT= MAC= SRC=198.51.100.7 "
        "DST=203.0.113.5 LEN=28 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=UDP SPT=1 DPT=7000 LEN=8 \n"
    )
    done = run_cli("patterns", "match", str(log))
    assert b"unknown" in done.stdout and b"cannot prove" in done.stdout


def test_match_pins_a_pack_version() -> None:
    done = run_cli("patterns", "match", "--pack", "netfilter@9", "-", stdin=KNOCK.encode())
    assert done.returncode == 2 and b"wants 9" in done.stderr


def test_list_shows_packs_and_digest_state(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["patterns", "list"]) == 0
    out = capsys.readouterr().out
    assert "netfilter" in out and "ulogd" in out and "released" in out


def test_test_passes_on_the_shipped_packs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["patterns", "test"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    passed, failed = (int(part.split()[0]) for part in last.split(", "))
    assert passed > 400 and failed == 0


def test_test_fails_on_a_wrong_expectation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(FIXTURES / "netfilter", tmp_path / "netfilter")
    case = tmp_path / "netfilter" / "wrong.txt"
    case.write_text('#> {"dpt": 7001}\n' + KNOCK + "\n")
    code = main(["patterns", "test", "--pack", "netfilter", "--fixtures", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1 and "wrong.txt:2" in out and out.strip().endswith("1 failed")


def test_test_reports_a_locally_edited_pack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(PATTERNS, tmp_path / "patterns")
    pack = tmp_path / "patterns" / "netfilter" / "pack.yaml"
    pack.write_text(pack.read_text() + "# edited\n")
    code = main(["patterns", "--patterns-dir", str(tmp_path / "patterns"), "test"])
    assert code == 1 and "give it a new version" in capsys.readouterr().out
    main(["patterns", "--patterns-dir", str(tmp_path / "patterns"), "list"])
    assert "modified" in capsys.readouterr().out


def test_digest_prints_the_index_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["patterns", "digest", "netfilter"]) == 0
    assert capsys.readouterr().out.split()[-1].startswith("sha256:")
