"""From decisions to hook runs, journaled in the state file.

The main loop records each decision in the state's hook journal (phase
`queued`) and commits that durably BEFORE any hook runs. A worker marks the
entry `running` before it starts the hook and removes it when the hook is
done (both journaled without a flush: see `logknock.state`). A failed close
stays in the journal and is retried with backoff until it succeeds; a failed
open is logged and shown in status, not retried. A newer open for the same
source and sequence supersedes a pending close retry. See `logknock.state`
for what a restart does with each phase.

Every change to the hook journal is a patch (`{"pending": {id: entry|None}}`)
given to `commit(patch, durable)`, which applies it to the state and journals
it (reporting, not raising, a failed write); the caller holds the state lock.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .hooks import HookResult, hook_for, run_checked
from .models import Action, Decision
from .scheduler import HookScheduler, Job
from .schema import Config
from .state import PendingHook, State

log = logging.getLogger("logknock.hooks")

RETRY_MAX = 300.0

Patch = dict[str, Any]
Commit = Callable[[Patch, bool], None]
RunHook = Callable[[Path, Decision, float, float], HookResult]


@dataclass(frozen=True, slots=True)
class HookDone:
    """Put on the main queue when a hook finished (or was refused)."""

    job: Job
    decision: Decision
    result: HookResult | None  # None: nothing to run (no hook configured)


def job_key(decision: Decision) -> Hashable:
    return (str(decision.src), decision.sequence)


class Dispatch:
    def __init__(
        self,
        config: Config,
        state: State,
        commit: Commit,
        lock: threading.Lock,
        *,
        notify: Callable[[HookDone], None],
        workers: int = 2,
        run: RunHook = run_checked,
    ) -> None:
        self.config, self.state, self.commit, self.lock = config, state, commit, lock
        self.notify, self.run = notify, run
        self.retries: list[tuple[float, int]] = []  # (due, pending id)
        self.failures = 0
        self.last_failure: str | None = None
        self.scheduler = HookScheduler(self._run, self._done, workers)

    def record(self, decisions: list[Decision]) -> tuple[list[Job], Patch]:
        """Decisions as queued journal entries (main thread, under the lock): their
        jobs, and the patch the caller must commit durably before starting them."""
        jobs: list[Job] = []
        entries: dict[str, Any] = {}
        next_id = self.state.next_id
        for decision in decisions:
            if decision.action is Action.OPEN:
                entries.update(dict.fromkeys(self._supersede(job_key(decision))))
            entries[str(next_id)] = PendingHook(next_id, "queued", decision.as_json()).as_json()
            jobs.append(Job(next_id, job_key(decision), decision))
            next_id += 1
        return jobs, {"pending": entries, "next_id": next_id}

    def start(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.scheduler.submit(job)

    def resume(self) -> list[Job]:
        """After a restart: what the journal says must (still) run (under the lock)."""
        jobs: list[Job] = []
        entries: dict[str, Any] = {}
        for pending in sorted(self.state.pending.values(), key=lambda p: p.id):
            decision = Decision.from_json(pending.decision)
            if pending.phase == "running" and decision.action is not Action.CLOSE:
                log.warning(
                    "the %s hook for %s (%s) may not have finished before the last stop; "
                    "not running it twice",
                    decision.action.value, decision.src, decision.sequence,
                )  # fmt: skip
                entries[str(pending.id)] = None
                continue
            entries[str(pending.id)] = _entry(pending, phase="queued")
            jobs.append(Job(pending.id, job_key(decision), decision))
        if entries:
            self.commit({"pending": entries}, True)
        return jobs

    def retry_due(self, now: float) -> None:
        """Resubmit failed closes whose backoff has passed (main thread)."""
        while self.retries and self.retries[0][0] <= now:
            _, pending_id = heapq.heappop(self.retries)
            with self.lock:
                pending = self.state.pending.get(pending_id)
            if pending is not None:
                decision = Decision.from_json(pending.decision)
                self.scheduler.submit(Job(pending_id, job_key(decision), decision))

    def schedule_retry(self, job: Job, attempts: int) -> float:
        delay = min(RETRY_MAX, 2.0 ** min(attempts, 9))
        heapq.heappush(self.retries, (time.time() + delay, job.id))
        return delay

    def _supersede(self, key: Hashable) -> list[str]:
        """Drop pending close retries of `key`; the ids to remove from the journal."""
        stale = [
            p.id
            for p in self.state.pending.values()
            if p.phase == "queued" and job_key(Decision.from_json(p.decision)) == key
            and p.decision["action"] == "close" and p.attempts > 0
        ]  # fmt: skip
        self.scheduler.cancel(key, keep=lambda job: job.id not in stale)
        return [str(pending_id) for pending_id in stale]

    def _run(self, job: Job) -> HookResult | None:
        """On a worker thread: mark running, run, return the result."""
        decision: Decision = job.payload
        path = hook_for(self.config, decision)
        if path is None:
            return None  # nothing to run: _done settles the journal entry
        with self.lock:
            pending = self.state.pending.get(job.id)
            if pending is None:
                return None  # superseded while it waited
            self._settle(job, _entry(pending, phase="running"))  # survives kill -9
        return self.run(path, decision, time.time(), self.config.hook_timeout)

    def _done(self, job: Job, result: HookResult | None) -> None:
        """On a worker thread: settle the journal entry, then tell the main loop."""
        decision: Decision = job.payload
        with self.lock:
            pending = self.state.pending.get(job.id)
            if pending is not None:
                retry = decision.action is Action.CLOSE and result is not None and not result.ok
                entry = _entry(pending, phase="queued", attempts=pending.attempts + 1)
                self._settle(job, entry if retry else None)  # lost: a close runs twice
        self.notify(HookDone(job, decision, result))

    def _settle(self, job: Job, entry: dict[str, Any] | None) -> None:
        """Journal one entry's new phase (or its removal), without a flush."""
        self.commit({"pending": {str(job.id): entry}}, False)


def _entry(pending: PendingHook, **changes: Any) -> dict[str, Any]:
    return {**pending.as_json(), **changes}
