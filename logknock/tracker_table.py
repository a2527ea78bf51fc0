"""The bounded progress table: where each source is in each sequence.

Two tiers share one budget of `limit` entries, an entry being one (source,
sequence) progress:

- the first-step tier (tracker_ring.FirstStepRing) holds sources that
  matched only a first step: a ring of `limit` slots in arrival order with
  an open-addressing index, about 70 bytes per entry. The knock that starts
  several sequences at once fills one slot that counts as that many entries.
- the advanced tier holds `Progress` objects for sources at step two or
  later.

The least advanced, oldest entry goes first. Only a first step adds entries
(a knock turns each entry of its source into at most one), so when the
budget is exceeded the oldest first-step slots go; a first step that could
only fit by pushing out an advanced entry is not recorded. A first-step slot
also goes once `limit` newer first-step slots were written after it.
Advanced entries leave by completing, resetting, timing out, a ban, or a
rebuild for a smaller limit, which keeps the most advanced, newest. Every
operation is O(1), amortised; timeouts of advanced entries come from a heap
that is rebuilt when stale items pile up.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass
from ipaddress import IPv4Address

from .models import IPAddress
from .tracker_ring import FirstStepRing
from .tracker_routes import Plan, Route, Start

_V6 = 1 << 128  # keeps IPv6 keys apart from IPv4 keys


def source_key(src: IPAddress) -> int:
    """The int the tables key a source by."""
    return int(src) if isinstance(src, IPv4Address) else int(src) | _V6


@dataclass(slots=True, eq=False)
class Progress:
    """A source at step `n` (two or more steps matched) of a sequence."""

    key: int
    src: IPAddress
    plan: Plan
    n: int  # steps matched so far
    routes: tuple[Route, ...]  # the routes every step so far matched
    first_at: float
    last_at: float
    alive: bool = True

    @property
    def deadline(self) -> float:
        spec = self.plan.spec
        return min(self.last_at + spec.step_timeout, self.first_at + spec.sequence_timeout)


class ProgressTable:
    """Both tiers, within `limit` entries."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._ring = FirstStepRing(self.limit)
        self._by_src: dict[int, list[Progress]] = {}
        self._advanced = 0
        self._deadlines: list[tuple[float, int, Progress]] = []
        self._ticket = itertools.count()

    @property
    def count(self) -> int:
        return self._ring.weight + self._advanced

    def first(self, key: int) -> tuple[Start, float] | None:
        """The source's first-step entry: what it started and when."""
        return self._ring.find(key)

    def advanced(self, key: int) -> list[Progress]:
        return self._by_src.get(key, [])

    def drop_source(self, key: int) -> None:
        """Forget everything the source had."""
        self._ring.remove(key)
        for progress in self._by_src.pop(key, []):
            progress.alive = False
            self._advanced -= 1

    def put_first(self, key: int, start: Start, at: float) -> None:
        """Record that the source matched a first step (it must have no first-step entry)."""
        if len(start.plans) > self.limit - self._advanced:
            return  # it would push out a source further along: the least advanced is this one
        self._ring.put(key, start, at)
        while self.count > self.limit:
            self._ring.pop_oldest(live_only=True)

    def put_advanced(self, progress: Progress) -> None:
        """Add progress at step two or later, in place of entries of the same source
        dropped before: this never takes the table over its limit."""
        self._by_src.setdefault(progress.key, []).append(progress)
        self._advanced += 1
        heapq.heappush(self._deadlines, (progress.deadline, next(self._ticket), progress))
        if len(self._deadlines) > 2 * self._advanced + 64:
            self._deadlines = [item for item in self._deadlines if item[2].alive]
            heapq.heapify(self._deadlines)

    def expire(self, now: float) -> list[Progress]:
        """Remove and return advanced progress whose deadline is before `now`.

        First-step entries past their wait are dropped too, from the oldest,
        without being returned: a lone first step proves nothing.
        """
        expired: list[Progress] = []
        while self._deadlines and self._deadlines[0][0] < now:
            progress = heapq.heappop(self._deadlines)[2]
            if progress.alive:
                self._remove(progress)
                expired.append(progress)
        while len(self._ring) and self._ring.oldest_is_stale(now):
            self._ring.pop_oldest()
        return expired

    def next_due(self) -> float:
        """When `expire` can next have something to do."""
        due = self._deadlines[0][0] if self._deadlines else math.inf
        return min(due, self._ring.oldest_due()) if len(self._ring) else due

    def rebuilt(self, limit: int, plans: set[Plan]) -> ProgressTable:
        """A new table of `limit` entries with this one's progress in `plans`,
        the least advanced, oldest left out first when they do not all fit."""
        table = ProgressTable(limit)
        advanced = [p for ps in self._by_src.values() for p in ps if p.plan in plans]
        advanced.sort(key=lambda p: (p.n, p.last_at), reverse=True)
        for progress in advanced[: table.limit]:
            table.put_advanced(progress)
        kept: dict[int, Start | None] = {}  # old start's id -> its part in `plans`
        for key, start, at in list(self._ring):
            if id(start) not in kept:
                kept[id(start)] = Start.of(r for r in start.routes if r.plan in plans)
            if (new := kept[id(start)]) is not None:
                table.put_first(key, new, at)
        return table

    def _remove(self, progress: Progress) -> None:
        progress.alive = False
        self._advanced -= 1
        siblings = self._by_src[progress.key]
        siblings.remove(progress)
        if not siblings:
            del self._by_src[progress.key]
