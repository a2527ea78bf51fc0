"""From decisions to hook runs, journaled in the state file.

The main loop records each decision in the state's hook journal (phase
`queued`) and saves the state BEFORE any hook runs. A worker marks the entry
`running` (saved) before it starts the hook and removes it when the hook is
done (saved). A failed close stays in the journal and is retried with
backoff until it succeeds; a failed open is logged and shown in status, not
retried. A newer open for the same source and sequence supersedes a pending
close retry. See `logknock.state` for what a restart does with each phase.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from .hooks import HookResult, hook_for, run_checked
from .models import Action, Decision
from .scheduler import HookScheduler, Job
from .schema import Config
from .state import PendingHook, State

log = logging.getLogger("logknock.hooks")

RETRY_MAX = 300.0


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
        save: Callable[[bool], None],
        lock: threading.Lock,
        *,
        notify: Callable[[HookDone], None],
        workers: int = 2,
    ) -> None:
        self.config, self.state, self.save, self.lock = config, state, save, lock
        self.notify = notify
        self.retries: list[tuple[float, int]] = []  # (due, pending id)
        self.failures = 0
        self.last_failure: str | None = None
        self.scheduler = HookScheduler(self._run, self._done, workers)

    def record(self, decisions: list[Decision]) -> list[Job]:
        """Journal decisions as queued (main thread, under the lock); save after."""
        jobs = []
        for decision in decisions:
            if decision.action is Action.OPEN:
                self._supersede(job_key(decision))
            pending = PendingHook(self.state.next_id, "queued", decision.as_json())
            self.state.pending[pending.id] = pending
            self.state.next_id += 1
            jobs.append(Job(pending.id, job_key(decision), decision))
        return jobs

    def start(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.scheduler.submit(job)

    def resume(self) -> list[Job]:
        """After a restart: what the journal says must (still) run."""
        jobs = []
        for pending in sorted(self.state.pending.values(), key=lambda p: p.id):
            decision = Decision.from_json(pending.decision)
            if pending.phase == "running" and decision.action is not Action.CLOSE:
                log.warning(
                    "the %s hook for %s (%s) may not have finished before the last stop; "
                    "not running it twice",
                    decision.action.value, decision.src, decision.sequence,
                )  # fmt: skip
                del self.state.pending[pending.id]
                continue
            pending.phase = "queued"
            jobs.append(Job(pending.id, job_key(decision), decision))
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

    def _supersede(self, key: Hashable) -> None:
        stale = [
            p.id
            for p in self.state.pending.values()
            if p.phase == "queued" and job_key(Decision.from_json(p.decision)) == key
            and p.decision["action"] == "close" and p.attempts > 0
        ]  # fmt: skip
        for pending_id in stale:
            del self.state.pending[pending_id]
        self.scheduler.cancel(key, keep=lambda job: job.id not in stale)

    def _run(self, job: Job) -> HookResult | None:
        """On a worker thread: mark running, run, return the result."""
        decision: Decision = job.payload
        path = hook_for(self.config, decision)
        if path is None:
            return None  # nothing to run: _done settles the journal entry
        with self.lock:
            if job.id not in self.state.pending:
                return None  # superseded while it waited
            self.state.pending[job.id].phase = "running"
            self.save(False)  # survives kill -9; see logknock.state on power loss
        return run_checked(path, decision, time.time(), self.config.hook_timeout)

    def _done(self, job: Job, result: HookResult | None) -> None:
        """On a worker thread: settle the journal entry, then tell the main loop."""
        decision: Decision = job.payload
        with self.lock:
            pending = self.state.pending.get(job.id)
            if pending is not None:
                retry = decision.action is Action.CLOSE and result is not None and not result.ok
                if retry:
                    pending.phase, pending.attempts = "queued", pending.attempts + 1
                else:
                    del self.state.pending[job.id]
                self.save(False)  # a lost removal only makes a close run twice
        self.notify(HookDone(job, decision, result))
