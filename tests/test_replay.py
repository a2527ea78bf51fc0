"""`logknock replay`: recorded logs through the matcher and tracker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from daemonlab import log_line
from hypothesis import given
from hypothesis import strategies as st

from logknock import cmd_replay
from logknock.models import Action, Decision

CONFIG = """\
prefix: "logknock: "
state_dir: {root}/state
hooks_dir: {root}/hooks
defaults: {{step_timeout: 5s, sequence_timeout: 15s, open_for: 30s}}
sequences:
  ssh:
    knock: [7000/udp, 8500/udp, 7600/tcp]
    open: [22/tcp]
    hook: {hook}
"""
T0 = 1795237459.92


def make_config(tmp_path: Path, hook: str = "/bin/true") -> Path:
    (tmp_path / "hooks").mkdir()
    config = tmp_path / "logknock.yaml"
    config.write_text(CONFIG.format(root=tmp_path, hook=hook))
    return config


def replay(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "logknock", "replay", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def knock_lines(src: str, start: float, gaps: tuple[float, ...] = (1.0, 1.0)) -> list[str]:
    times = [start, start + gaps[0], start + gaps[0] + gaps[1]]
    steps = [(7000, "UDP"), (8500, "UDP"), (7600, "TCP")]
    return [log_line(src, port, proto, at) for (port, proto), at in zip(steps, times, strict=True)]


def test_replay_emits_open_and_the_close_up_to_the_last_record(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    lines = knock_lines("198.51.100.7", T0)
    lines.append(log_line("203.0.113.9", 9999, "UDP", T0 + 40))  # the clock moves on
    log = tmp_path / "kern.log"
    log.write_text("\n".join(lines) + "\n")
    done = replay("--config", str(config), "--json", str(log))
    assert done.returncode == 0, done.stderr
    decisions = [json.loads(line) for line in done.stdout.splitlines()]
    assert decisions == [
        {"at": round(T0 + 2, 6), "action": "open", "sequence": "ssh", "src": "198.51.100.7",
         "ports": ["22/tcp"], "expires": round(T0 + 32, 6)},
        {"at": round(T0 + 32, 6), "action": "close", "sequence": "ssh", "src": "198.51.100.7",
         "ports": ["22/tcp"], "expires": None},
    ]  # fmt: skip
    assert "4 lines" in done.stderr and "4 knocks" in done.stderr


def test_replay_reads_several_files_and_envelopes(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    json_line = json.dumps(
        {
            "_TRANSPORT": "kernel",
            "__REALTIME_TIMESTAMP": str(int((T0 + 1) * 1e6)),
            "MESSAGE": log_line("2001:db8::7", 8500, "UDP").split("kernel: ", 1)[1],
        }
    )
    first = tmp_path / "a.log"
    first.write_text(log_line("2001:db8::7", 7000, "UDP", T0) + "\n")
    second = tmp_path / "b.json"
    second.write_text(json_line + "\n" + log_line("2001:db8::7", 7600, "TCP", T0 + 2) + "\n")
    done = replay("--config", str(config), "--json", str(first), str(second))
    actions = [json.loads(line)["action"] for line in done.stdout.splitlines()]
    assert actions == ["open"], done.stderr


def test_a_too_slow_sequence_opens_nothing(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    log = tmp_path / "kern.log"
    log.write_text("\n".join(knock_lines("198.51.100.7", T0, gaps=(1.0, 9.0))) + "\n")
    done = replay("--config", str(config), "--json", str(log))
    assert done.returncode == 0 and done.stdout == ""


def test_kernel_only_ignores_text_lines(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    log = tmp_path / "kern.log"
    log.write_text("\n".join(knock_lines("198.51.100.7", T0)) + "\n")
    done = replay("--config", str(config), "--json", "--kernel-only", str(log))
    assert done.stdout == "" and "could not prove a kernel origin" in done.stderr


def test_run_hooks_runs_the_hook_with_the_decision(tmp_path: Path) -> None:
    hook = tmp_path / "hooks" / "record"
    config = make_config(tmp_path, hook=str(hook))
    hook.write_text('#!/bin/sh\necho "$1 $LOGKNOCK_SRC $LOGKNOCK_PORTS" >> "$(dirname "$0")/ran"\n')
    hook.chmod(0o755)
    log = tmp_path / "kern.log"
    later = log_line("203.0.113.9", 9999, "UDP", T0 + 40)
    log.write_text("\n".join([*knock_lines("198.51.100.7", T0), later]) + "\n")
    assert replay("--config", str(config), str(log)).returncode == 0
    assert not (tmp_path / "hooks" / "ran").exists()
    assert replay("--config", str(config), "--run-hooks", str(log)).returncode == 0
    assert (tmp_path / "hooks" / "ran").read_text().splitlines() == [
        "open 198.51.100.7 22/tcp",
        "close 198.51.100.7 22/tcp",
    ]


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    done = replay("--config", str(make_config(tmp_path)), str(tmp_path / "nope.log"))
    assert done.returncode == 1 and "cannot read" in done.stderr and "Traceback" not in done.stderr


def test_a_broken_config_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("sequences:\n  ssh:\n    knocks: [1/udp]\n")
    done = replay("--config", str(config), str(config))
    assert done.returncode == 2 and "did you mean" in done.stderr


decisions = st.builds(
    Decision,
    at=st.floats(min_value=0, max_value=4e9),
    action=st.sampled_from(Action),
    src=st.ip_addresses(),
    sequence=st.none() | st.text(max_size=12),
    ports=st.lists(st.text(max_size=8), max_size=3).map(tuple),
    expires=st.none() | st.floats(min_value=0, max_value=4e9),
)


@given(decisions)
def test_a_json_line_is_what_json_dumps_writes(decision: Decision) -> None:
    assert cmd_replay._json_line(decision) == json.dumps(decision.as_json())
