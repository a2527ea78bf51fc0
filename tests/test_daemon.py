"""The real daemon process: knocks, hooks, restarts, kill -9, reload, control.

Knocks arrive through a kernel-only log file (see daemonlab.py); the kernel
path itself is covered by the end-to-end tests in network namespaces.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonlab import CLOSE, SSH, DaemonLab, wait_for

from logknock.control import call


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[DaemonLab]:
    lab = DaemonLab(tmp_path)
    yield lab
    lab.close()


def runs(lab: DaemonLab, action: str) -> list[dict[str, str]]:
    return [r for r in lab.hook_runs() if r["action"] == action]


def phases(lab: DaemonLab) -> list[str]:
    return [pending["phase"] for pending in lab.status()["hooks"]["pending"]]


def test_sequence_opens_then_closes_at_expiry(lab: DaemonLab) -> None:
    lab.start()
    lab.knock("198.51.100.7", *SSH)
    opened = wait_for(lambda: runs(lab, "open"), "the open hook")
    assert opened[0]["src"] == "198.51.100.7" and opened[0]["ports"] == "22/tcp"
    assert 1 <= int(opened[0]["timeout"]) <= 3
    wait_for(lambda: runs(lab, "close"), "the close hook at expiry", timeout=10)
    assert len(runs(lab, "open")) == len(runs(lab, "close")) == 1


def test_wrong_order_opens_nothing(lab: DaemonLab) -> None:
    lab.start()
    lab.knock("198.51.100.8", SSH[1], SSH[0], SSH[2])
    lab.knock("198.51.100.9", *SSH)  # a later, correct source proves the lines were read
    wait_for(lambda: runs(lab, "open"), "the open hook")
    assert {r["src"] for r in lab.hook_runs()} == {"198.51.100.9"}


def test_close_sequence_closes(lab: DaemonLab) -> None:
    lab.write_config(open_for="1h")
    lab.start()
    lab.knock("2001:db8::7", *SSH)
    wait_for(lambda: runs(lab, "open"), "the open hook")
    lab.knock("2001:db8::7", *CLOSE)
    closed = wait_for(lambda: runs(lab, "close"), "the close hook")
    assert closed[0]["src"] == "2001:db8::7"


def test_control_socket_status_open_and_close(lab: DaemonLab) -> None:
    lab.start()
    answer = call(lab.socket, {"cmd": "open", "src": "203.0.113.5", "sequence": "ssh", "for": 600})
    assert answer["ok"] and answer["decisions"][0]["action"] == "open"
    wait_for(lambda: runs(lab, "open"), "the open hook")
    status = lab.status()
    assert [g["src"] for g in status["grants"]] == ["203.0.113.5"]
    assert oct(Path(lab.socket).stat().st_mode & 0o777) == "0o600"
    call(lab.socket, {"cmd": "close", "src": "203.0.113.5"})
    wait_for(lambda: runs(lab, "close"), "the close hook")
    assert lab.status()["grants"] == []
    refused = call(lab.socket, {"cmd": "open", "src": "not-an-address", "sequence": "ssh"})
    assert not refused["ok"]


def test_old_lines_at_start_are_skipped(lab: DaemonLab) -> None:
    lab.knock("198.51.100.7", *SSH, at=time.time() - 3600)  # before the daemon ever ran
    lab.start()
    lab.knock("198.51.100.7", *SSH, at=time.time() - 3600)  # old time, read now
    lab.knock("198.51.100.10", *SSH)
    wait_for(lambda: runs(lab, "open"), "the open hook")
    assert {r["src"] for r in lab.hook_runs()} == {"198.51.100.10"}
    assert lab.status()["sources"][f"file:{lab.log}"]["too_old"] == 3


def test_kill_9_with_a_grant_open_closes_it_after_restart(lab: DaemonLab) -> None:
    lab.start()
    lab.knock("198.51.100.7", *SSH)
    wait_for(lambda: runs(lab, "open"), "the open hook")
    lab.kill(signal.SIGKILL)
    time.sleep(3.5)  # the grant's 3 s pass while the daemon is down
    lab.start()
    wait_for(lambda: runs(lab, "close"), "the close hook after restart")
    assert len(runs(lab, "open")) == 1 and len(runs(lab, "close")) == 1
    assert lab.status()["grants"] == []


def test_a_grant_survives_kill_9_through_the_state_journal(lab: DaemonLab) -> None:
    lab.write_config(open_for="1h")
    lab.start()
    lab.knock("198.51.100.7", *SSH)
    wait_for(lambda: runs(lab, "open"), "the open hook")
    lab.kill(signal.SIGKILL)
    assert not (lab.state()["tracker"] or {}).get("grants")  # only the journal has it
    lab.start()
    assert [g["src"] for g in lab.status()["grants"]] == ["198.51.100.7"]
    assert lab.state()["tracker"]["grants"][0]["src"] == "198.51.100.7"  # compacted at start
    assert len(runs(lab, "open")) == 1 and runs(lab, "close") == []


def test_lines_written_while_down_are_acted_on_once(lab: DaemonLab) -> None:
    lab.start()
    lab.knock("198.51.100.7", SSH[0])
    wait_for(lambda: lab.status()["sources"][f"file:{lab.log}"]["knocks"] == 1, "the first knock")
    time.sleep(2.5)  # let the position reach the state file
    lab.kill(signal.SIGKILL)
    lab.knock("198.51.100.11", *SSH)
    lab.start()
    wait_for(lambda: runs(lab, "open"), "the open hook")
    lab.kill(signal.SIGTERM)
    lab.start()
    time.sleep(1.0)
    assert [r["src"] for r in runs(lab, "open")] == ["198.51.100.11"]


def test_kill_9_during_the_open_hook_does_not_run_it_twice(lab: DaemonLab) -> None:
    (lab.hooks / "hang-open").touch()
    lab.write_config(open_for="4s", hook_timeout="30s")
    lab.start()
    lab.knock("198.51.100.7", *SSH)
    wait_for((lab.hooks / "hung-open").exists, "the open hook to hang")
    assert phases(lab) == ["running"]
    lab.kill(signal.SIGKILL)
    (lab.hooks / "hang-open").unlink()
    lab.start()
    wait_for(lambda: runs(lab, "close"), "the close at expiry", timeout=15)
    assert runs(lab, "open") == []  # the interrupted open was not run again


def test_a_hanging_hook_is_killed_and_the_next_knock_still_opens(lab: DaemonLab) -> None:
    lab.write_config(hook_timeout="1s")
    (lab.hooks / "hang-open").touch()
    lab.start()
    lab.knock("198.51.100.7", *SSH)
    wait_for(lambda: lab.status()["hooks"]["failures"] == 1, "the hook timeout")
    (lab.hooks / "hang-open").unlink()
    lab.knock("198.51.100.12", *SSH)
    assert wait_for(lambda: runs(lab, "open"), "the next open")[0]["src"] == "198.51.100.12"


def test_a_failed_close_is_retried_until_it_succeeds(lab: DaemonLab) -> None:
    (lab.hooks / "fail-close").touch()
    lab.start()
    lab.knock("198.51.100.7", *SSH)
    wait_for(lambda: lab.status()["hooks"]["failures"] >= 1, "a failed close", timeout=10)
    assert lab.status()["hooks"]["pending"][0]["action"] == "close"
    (lab.hooks / "fail-close").unlink()
    wait_for(lambda: runs(lab, "close"), "the retried close", timeout=15)
    assert wait_for(lambda: lab.status()["hooks"]["pending"] == [], "an empty journal")


def test_brute_force_bans_the_source(lab: DaemonLab) -> None:
    lab.start()
    for _ in range(3):
        lab.knock("198.51.100.66", SSH[0], (9999, "UDP"))
    wait_for(lambda: lab.status()["bans"], "the ban")
    lab.knock("198.51.100.66", *SSH)
    lab.knock("198.51.100.13", *SSH)
    wait_for(lambda: runs(lab, "open"), "another source's open")
    assert {r["src"] for r in runs(lab, "open")} == {"198.51.100.13"}


def test_reload_takes_a_valid_config_and_refuses_a_broken_one(lab: DaemonLab) -> None:
    lab.start()
    lab.config.write_text(lab.config.read_text().replace("sequences:", "sequencez:"))
    assert lab.proc is not None
    lab.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in lab.stderr(), "the refusal")
    lab.knock("198.51.100.7", *SSH)  # the old configuration still works
    wait_for(lambda: runs(lab, "open"), "the open hook")
    lab.write_config(open_for="1h")
    lab.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in lab.stderr(), "the reload")
    assert lab.status()["grants"][0]["src"] == "198.51.100.7"  # grants survive a reload


def test_sigterm_saves_state_and_exits_cleanly(lab: DaemonLab) -> None:
    lab.write_config(open_for="1h")
    lab.start()
    lab.knock("198.51.100.7", *SSH)
    wait_for(lambda: runs(lab, "open"), "the open hook")
    assert lab.kill(signal.SIGTERM) == 0
    assert lab.state()["tracker"]["grants"][0]["src"] == "198.51.100.7"
    assert runs(lab, "close") == []  # grants stay until expiry unless close_on_stop


def test_garbage_lines_do_not_stop_the_daemon(lab: DaemonLab) -> None:
    lab.start()
    with lab.log.open("ab") as f:
        f.write(b"\xff\xfe\x00garbage logknock: IN=\n" + b"logknock: " + b"A" * 200_000 + b"\n")
        f.write(b"2026-11-21T05:00:00+00:00 host kernel: logknock: IN=eth0 OUT= SRC=1.2.3.4 \n")
    lab.knock("198.51.100.14", *SSH)
    wait_for(lambda: runs(lab, "open"), "the open hook")
    source = lab.status()["sources"][f"file:{lab.log}"]
    assert sum(source["rejections"].values()) >= 2


def test_an_untrusted_file_source_is_refused(lab: DaemonLab) -> None:
    lab.config.write_text(lab.config.read_text().replace("    trust: kernel-only\n", ""))
    with pytest.raises(AssertionError, match="exited 2"):
        lab.start()
    assert "kernel" in lab.stderr()


def test_a_failing_source_is_reported_and_does_not_stop_the_others(lab: DaemonLab) -> None:
    broken = lab.root / "a-directory"
    broken.mkdir()
    text = lab.config.read_text()
    lab.config.write_text(
        text.replace("prefix:", f"  - file: {broken}\n    trust: kernel-only\nprefix:", 1)
    )
    lab.start()
    failure = wait_for(
        lambda: lab.status()["sources"][f"file:{broken}"]["failure"], "the failure report"
    )
    assert "not a regular file" in failure
    lab.knock("198.51.100.15", *SSH)
    assert wait_for(lambda: runs(lab, "open"), "the open hook")[0]["src"] == "198.51.100.15"
