"""The state file: a base and an append-only journal, and what a crash leaves of them.

A crash is simulated by cutting the journal (a write cut short, or the bytes
never flushed) or by stopping a compaction half way; loading must then give
the state as of some whole change, never a mix, and never lose a change that
was flushed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logknock import state as state_module
from logknock.state import PendingHook, State, StateError, StateFile, replay

DECISION = {"at": 1.0, "action": "open", "src": "198.51.100.7", "sequence": "ssh",
            "ports": ["22/tcp"], "expires": 31.0}  # fmt: skip
TRACKER = json.dumps({"version": 1, "grants": [], "bans": [], "one_time": {}, "totp": []})


def entry(pending_id: int, phase: str = "queued", attempts: int = 0) -> dict[str, Any]:
    return PendingHook(pending_id, phase, DECISION, attempts).as_json()


# One decision's life: queued with the tracker (durable), running, done; a position save.
CHANGES: list[tuple[dict[str, Any], bool]] = [
    ({"pending": {"1": entry(1)}, "next_id": 2, "tracker": TRACKER, "positions": {"kmsg": "5"}},
     True),
    ({"pending": {"1": entry(1, "running")}}, False),
    ({"pending": {"2": entry(2)}, "next_id": 3}, True),
    ({"pending": {"1": None}}, False),
    ({"pending": {"2": entry(2, "queued", attempts=1)}}, False),
    ({"positions": {"kmsg": "9"}}, True),
]  # fmt: skip


def snapshot(state: State) -> dict[str, Any]:
    return {
        "positions": state.positions,
        "tracker": json.loads(state.tracker) if state.tracker else None,
        "pending": {k: p.as_json() for k, p in state.pending.items()},
        "next_id": state.next_id,
    }


def after(count: int) -> dict[str, Any]:
    """The state after the first `count` changes, built in memory only."""
    expected = State()
    for patch, _ in CHANGES[:count]:
        expected.apply(patch)
    return snapshot(expected)


def written(tmp_path: Path) -> StateFile:
    """A state file holding a fresh base and then every change of CHANGES."""
    file = StateFile(tmp_path)
    state = file.load()
    file.save(state)
    for patch, durable in CHANGES:
        file.commit(state, patch, durable)
    file.close()
    return file


def test_changes_come_back_after_a_restart(tmp_path: Path) -> None:
    written(tmp_path)
    assert snapshot(StateFile(tmp_path).load()) == after(len(CHANGES))


def test_a_journal_cut_anywhere_loads_the_last_whole_change(tmp_path: Path) -> None:
    file = written(tmp_path)
    data = file.journal_path.read_bytes()
    ends = [i + 1 for i, byte in enumerate(data) if byte == ord("\n")][1:]  # after the header
    for cut in range(len(data) + 1):
        file.journal_path.write_bytes(data[:cut])
        whole = sum(1 for end in ends if end <= cut)
        assert snapshot(StateFile(tmp_path).load()) == after(whole), f"cut at byte {cut}"


def test_nothing_is_appended_after_a_cut_line(tmp_path: Path) -> None:
    file = written(tmp_path)
    data = file.journal_path.read_bytes()
    file.journal_path.write_bytes(data[:-3])  # the last change cut short by a crash
    reopened = StateFile(tmp_path)
    state = reopened.load()
    reopened.commit(state, {"positions": {"kmsg": "42"}}, True)  # compacts first
    reopened.close()
    expected = after(len(CHANGES) - 1)
    expected["positions"] = {"kmsg": "42"}
    assert snapshot(StateFile(tmp_path).load()) == expected


def test_a_crash_between_new_base_and_new_journal_applies_nothing_twice(tmp_path: Path) -> None:
    file = written(tmp_path)
    old_journal = file.journal_path.read_bytes()
    state = file.load()
    state.apply({"pending": {"2": None}})  # done, but its line never made it (a failed append)
    file.save(state)  # compaction: base of the next generation, then an empty journal
    file.journal_path.write_bytes(old_journal)  # as if the crash came between the two
    loaded = StateFile(tmp_path).load()
    assert loaded.pending == {} and loaded.generation == state.generation == 2


def test_a_failed_append_makes_the_next_change_compact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = StateFile(tmp_path)
    state = file.load()
    file.save(state)

    def half_then_full_disk(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(state_module, "_write_all", half_then_full_disk)
        with pytest.raises(OSError):
            file.commit(state, CHANGES[0][0], True)
    file.commit(state, CHANGES[1][0], False)
    file.close()
    assert snapshot(StateFile(tmp_path).load()) == after(2)


def test_only_durable_changes_are_flushed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flushed: list[int] = []
    monkeypatch.setattr(os, "fdatasync", flushed.append)
    written(tmp_path)
    assert len(flushed) == sum(durable for _, durable in CHANGES)


def test_a_base_without_journal_from_an_older_version_loads(tmp_path: Path) -> None:
    legacy = {"version": 1, "positions": {"kmsg": "3"}, "tracker": None,
              "pending": [entry(4, "running")], "next_id": 5}  # fmt: skip
    (tmp_path / "state.json").write_text(json.dumps(legacy, indent=1))
    loaded = StateFile(tmp_path).load()
    assert (loaded.positions, loaded.next_id, loaded.generation) == ({"kmsg": "3"}, 5, 0)
    assert loaded.pending[4].phase == "running"


@pytest.mark.parametrize(
    "line",
    [b'["not", "a", "change"]\n', b'{"pending": {"x": {"id": 1}}}\n', b'{"next_id": "many"}\n'],
)
def test_a_whole_line_that_is_no_change_is_refused(tmp_path: Path, line: bytes) -> None:
    file = written(tmp_path)
    with file.journal_path.open("ab") as journal:
        journal.write(line)
    with pytest.raises(StateError):
        StateFile(tmp_path).load()
    moved = StateFile(tmp_path).quarantine()
    assert moved.exists() and (tmp_path / "state.journal.broken").exists()
    assert snapshot(StateFile(tmp_path).load()) == snapshot(State())


@pytest.mark.parametrize(
    "text", ["[1, 2]", '{"version": 9}', "{not json", '{"version": 1, "pending": [{}]}']
)
def test_an_unusable_base_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "state.json").write_text(text)
    with pytest.raises(StateError, match=r"state\.json"):
        StateFile(tmp_path).load()


def test_compaction_is_due_only_when_the_journal_outgrew_the_base(tmp_path: Path) -> None:
    file = StateFile(tmp_path)
    state = file.load()
    file.save(state)
    big = {"positions": {"file:/x": "x" * (state_module.COMPACT_MIN // 2)}}
    file.commit(state, big, False)
    assert not file.compaction_due
    file.commit(state, big, False)
    file.commit(state, big, False)
    assert file.compaction_due
    file.save(state)
    assert not file.compaction_due
    file.close()


@settings(max_examples=60, deadline=None)
@given(
    changes=st.lists(
        st.tuples(st.integers(1, 4), st.sampled_from(["queued", "running", None]), st.booleans()),
        min_size=1,
        max_size=12,
    ),
    cut=st.floats(0, 1),
)
def test_replay_of_any_cut_journal_is_a_prefix_of_its_changes(
    changes: list[tuple[int, str | None, bool]], cut: float
) -> None:
    patches = [
        {"pending": {str(i): None if phase is None else entry(i, phase)}, "next_id": n + 2}
        for n, (i, phase, _) in enumerate(changes)
    ]
    header = state_module._header(0)
    lines = [json.dumps(p).encode() + b"\n" for p in patches]
    data = header + b"".join(lines)
    end = len(header) + int(cut * (len(data) - len(header)))
    state = State()
    applied = replay(state, data[:end])
    ends = [len(header) + sum(map(len, lines[: n + 1])) for n in range(len(lines))]
    assert applied == sum(1 for line_end in ends if line_end <= end)
    expected = State()
    for patch in patches[:applied]:
        expected.apply(patch)
    assert snapshot(state) == snapshot(expected)
