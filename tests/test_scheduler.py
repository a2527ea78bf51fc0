"""The hook scheduler: order per key, parallel across keys, bounded close."""

from __future__ import annotations

import threading
import time

from logknock.scheduler import HookScheduler, Job


class Recorder:
    def __init__(self, delays: dict[int, float] | None = None) -> None:
        self.delays = delays or {}
        self.log: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.done = threading.Event()

    def run(self, job: Job) -> int:
        with self.lock:
            self.log.append(("start", job.id))
        time.sleep(self.delays.get(job.id, 0))
        with self.lock:
            self.log.append(("end", job.id))
        return job.id

    def finished(self, job: Job, result: int) -> None:
        assert result == job.id


def test_jobs_of_one_key_run_in_order_and_never_overlap() -> None:
    rec = Recorder({1: 0.2})
    sched = HookScheduler(rec.run, rec.finished, workers=4)
    for n in (1, 2, 3):
        sched.submit(Job(n, "198.51.100.7/ssh", None))
    assert sched.close(timeout=10)
    assert rec.log == [("start", 1), ("end", 1), ("start", 2), ("end", 2), ("start", 3), ("end", 3)]


def test_other_keys_do_not_wait_for_a_slow_one() -> None:
    rec = Recorder({1: 0.5})
    sched = HookScheduler(rec.run, rec.finished, workers=2)
    sched.submit(Job(1, "a", None))
    sched.submit(Job(2, "b", None))
    assert sched.close(timeout=10)
    assert rec.log.index(("end", 2)) < rec.log.index(("end", 1))


def test_cancel_drops_only_queued_jobs() -> None:
    rec = Recorder({1: 0.3})
    sched = HookScheduler(rec.run, rec.finished, workers=1)
    for n in (1, 2, 3):
        sched.submit(Job(n, "k", None))
    time.sleep(0.05)
    dropped = sched.cancel("k", keep=lambda job: job.id != 2)
    assert [j.id for j in dropped] == [2]
    assert sched.close(timeout=10)
    assert [n for what, n in rec.log if what == "start"] == [1, 3]


def test_cancel_of_everything_queued_leaves_the_scheduler_usable() -> None:
    rec = Recorder({1: 0.2})
    sched = HookScheduler(rec.run, rec.finished, workers=1)
    sched.submit(Job(1, "x", None))
    sched.submit(Job(2, "y", None))
    sched.cancel("y", keep=lambda job: False)
    sched.submit(Job(3, "y", None))
    assert sched.close(timeout=10)
    assert {n for what, n in rec.log if what == "end"} == {1, 3}


def test_close_gives_up_after_its_timeout() -> None:
    rec = Recorder({1: 1.0})
    sched = HookScheduler(rec.run, rec.finished, workers=1)
    sched.submit(Job(1, "k", None))
    sched.submit(Job(2, "k", None))
    assert not sched.close(timeout=0.2)
    assert ("start", 2) not in rec.log
