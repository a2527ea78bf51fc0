"""Dispatch: the hook journal around each hook run, as a restart would find it on disk.

The hook runner is replaced by one that records, at the moment a hook would
start, what a daemon killed right then would load from the state files.
"""

from __future__ import annotations

import ipaddress
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logknock.config import load_text
from logknock.dispatch import Dispatch, HookDone
from logknock.hooks import HookResult
from logknock.models import Action, Decision
from logknock.state import PendingHook, StateFile

CONFIG = """\
source: kmsg
prefix: "logknock: "
state_dir: {root}/state
hooks_dir: {root}/hooks
control_socket: {root}/control
sequences:
  ssh:
    knock: [7000/udp, 8000/udp]
    open: [22/tcp]
    hook: recorder
"""


def decision(action: Action, sequence: str = "ssh", src: str = "198.51.100.7") -> Decision:
    return Decision(1000.0, action, ipaddress.ip_address(src), sequence, ("22/tcp",), 1030.0)


class World:
    """A Dispatch on a real state file, a recording hook runner and commit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.file = StateFile(root / "state")
        self.state = self.file.load()
        self.file.save(self.state)
        self.events: list[tuple[Any, ...]] = []
        self.failing: set[str] = set()  # actions whose hook fails
        self.done: queue.Queue[HookDone] = queue.Queue()
        self.lock = threading.Lock()
        config = load_text(CONFIG.format(root=root))
        self.dispatch = Dispatch(config, self.state, self.commit, self.lock,
                                 notify=self.done.put, workers=1, run=self.run)  # fmt: skip

    def commit(self, patch: dict[str, Any], durable: bool) -> None:
        self.events.append(("commit", durable, phases(patch)))
        self.file.commit(self.state, patch, durable)

    def run(self, path: Path, decision: Decision, now: float, timeout: float) -> HookResult:
        self.events.append(("run", decision.action.value, self.on_disk()))
        code = 1 if decision.action.value in self.failing else 0
        return HookResult(str(path), decision.action.value, code, False, "", 0.0)

    def on_disk(self) -> dict[int, str]:
        """What a restart would load now: each pending id and its phase."""
        return {i: p.phase for i, p in StateFile(self.root / "state").load().pending.items()}

    def handle(self, *decisions: Decision) -> None:
        """What the daemon's main loop does with new decisions."""
        with self.lock:
            jobs, patch = self.dispatch.record(list(decisions))
            self.commit(patch, True)
        self.dispatch.start(jobs)

    def finish(self) -> list[HookDone]:
        assert self.dispatch.scheduler.close(timeout=10)
        self.file.close()
        return [self.done.get_nowait() for _ in range(self.done.qsize())]


def phases(patch: dict[str, Any]) -> dict[str, str | None]:
    return {k: v and v["phase"] for k, v in patch.get("pending", {}).items()}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    yield made
    made.dispatch.scheduler.close(timeout=10)
    made.file.close()


def test_an_open_is_journaled_durably_then_running_before_its_hook_starts(world: World) -> None:
    world.handle(decision(Action.OPEN))
    world.finish()
    assert world.events == [
        ("commit", True, {"1": "queued"}),
        ("commit", False, {"1": "running"}),
        ("run", "open", {1: "running"}),  # killed now, a restart would not run it again
        ("commit", False, {"1": None}),
    ]
    assert world.on_disk() == {}


def test_a_failed_close_stays_queued_with_one_more_attempt(world: World) -> None:
    world.failing.add("close")
    world.handle(decision(Action.CLOSE))
    [done] = world.finish()
    assert done.result is not None and not done.result.ok
    assert world.state.pending[1].attempts == 1 and world.on_disk() == {1: "queued"}


def test_a_failed_open_is_not_retried(world: World) -> None:
    world.failing.add("open")
    world.handle(decision(Action.OPEN))
    world.finish()
    assert world.on_disk() == {}


def test_a_sequence_gone_in_a_reload_settles_its_entry_without_running(world: World) -> None:
    world.handle(decision(Action.CLOSE, sequence="gone"))
    [done] = world.finish()
    assert done.result is None and world.on_disk() == {}
    assert [e for e in world.events if e[0] == "run"] == []


def test_resume_drops_a_running_open_and_runs_a_running_close_again(world: World) -> None:
    journal = [
        PendingHook(1, "running", decision(Action.OPEN).as_json()),
        PendingHook(2, "running", decision(Action.CLOSE, src="198.51.100.8").as_json()),
        PendingHook(3, "queued", decision(Action.OPEN, src="198.51.100.9").as_json()),
    ]
    entries = {str(p.id): p.as_json() for p in journal}
    world.commit({"pending": entries, "next_id": 4}, True)
    with world.lock:
        jobs = world.dispatch.resume()
    assert [job.id for job in jobs] == [2, 3]
    assert world.on_disk() == {2: "queued", 3: "queued"}


def test_a_new_open_supersedes_a_close_waiting_for_its_retry(world: World) -> None:
    retry = PendingHook(1, "queued", decision(Action.CLOSE).as_json(), attempts=2)
    world.commit({"pending": {"1": retry.as_json()}, "next_id": 2}, True)
    with world.lock:
        _, patch = world.dispatch.record([decision(Action.OPEN)])
    assert phases(patch) == {"1": None, "2": "queued"} and patch["next_id"] == 3
