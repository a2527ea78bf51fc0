"""Runs hook jobs off the main loop: a few workers, strict order per key.

Jobs with the same key (source address, sequence) run one at a time, in the
order they were submitted, so a close never overtakes its open. Jobs of
different keys run in parallel, up to `workers` at once. The scheduler knows
nothing about hooks: it calls `run(job)` on a worker thread and hands the
job and its result to `done(job, result)`, also on the worker thread (the
daemon only enqueues there).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    key: Hashable
    payload: Any


class HookScheduler:
    def __init__(
        self,
        run: Callable[[Job], Any],
        done: Callable[[Job, Any], None],
        workers: int = 2,
    ) -> None:
        self._run, self._done = run, done
        self._queues: dict[Hashable, deque[Job]] = {}
        self._ready: deque[Hashable] = deque()  # keys with work and no job running
        self._running: set[Hashable] = set()
        self._cond = threading.Condition()
        self._closing = False
        self._threads = [
            threading.Thread(target=self._work, name=f"logknock-hook-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job) -> None:
        with self._cond:
            queue = self._queues.setdefault(job.key, deque())
            queue.append(job)
            if len(queue) == 1 and job.key not in self._running:
                self._ready.append(job.key)
                self._cond.notify()

    def cancel(self, key: Hashable, keep: Callable[[Job], bool]) -> list[Job]:
        """Drop queued (not running) jobs of `key` for which `keep` is false."""
        with self._cond:
            queue = self._queues.get(key, deque())
            dropped = [job for job in queue if not keep(job)]
            kept = deque(job for job in queue if keep(job))
            if kept:
                self._queues[key] = kept
            else:
                self._queues.pop(key, None)
                if key in self._ready:
                    self._ready.remove(key)
            return dropped

    @property
    def busy(self) -> int:
        with self._cond:
            return len(self._running) + sum(len(q) for q in self._queues.values())

    def close(self, timeout: float) -> bool:
        """Finish what is queued, within `timeout`; True when everything ran."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._ready or self._running) and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(timeout=min(left, 0.2))
            finished = not self._ready and not self._running
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()) + 0.5)
        return finished

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                result = self._run(job)
            finally:
                self._finish(job)
            self._done(job, result)

    def _next(self) -> Job | None:
        with self._cond:
            while not self._closing and not self._ready:
                self._cond.wait(timeout=0.5)
            if self._closing:
                return None
            key = self._ready.popleft()
            self._running.add(key)
            queue = self._queues[key]
            job = queue.popleft()
            if not queue:
                del self._queues[key]
            return job

    def _finish(self, job: Job) -> None:
        with self._cond:
            self._running.discard(job.key)
            if self._queues.get(job.key):
                self._ready.append(job.key)
            self._cond.notify_all()
