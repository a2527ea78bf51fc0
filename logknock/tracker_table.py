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
from ipaddress import IPv4Address

from .models import IPAddress
from .tracker_ring import FirstStepRing
from .tracker_routes import Plan, Route, Start

V6 = 1 << 128  # keeps IPv6 keys apart from IPv4 keys


def source_key(src: IPAddress) -> int:
    """The int the tables key a source by (`Tracker.feed` spells this out)."""
    key = src.__int__()  # int(src) without the slot wrapper: a third of the time
    return key if isinstance(src, IPv4Address) else key | V6


class Progress:
    """A source at step `n` (two or more steps matched) of a sequence.

    A plain slotted class rather than a dataclass: one is made for most knocks
    that advance, and its deadline, read three times, is worked out once."""

    __slots__ = ("alive", "deadline", "first_at", "key", "last_at", "n", "plan", "routes", "src")

    def __init__(  # noqa: PLR0917 - keyword arguments to a class call cost a dict each
        self,
        key: int,
        src: IPAddress,
        plan: Plan,
        n: int,  # steps matched so far
        routes: tuple[Route, ...],  # the routes every step so far matched
        first_at: float,
        last_at: float,
    ) -> None:
        self.key, self.src, self.plan, self.n, self.routes = key, src, plan, n, routes
        self.first_at, self.last_at, self.alive = first_at, last_at, True
        spec = plan.spec
        step_ends, sequence_ends = last_at + spec.step_timeout, first_at + spec.sequence_timeout
        self.deadline = sequence_ends if sequence_ends < step_ends else step_ends


class ProgressTable:
    """Both tiers, within `limit` entries.

    The tracker's lanes read `ring` (by slot) and `by_source` directly, a lookup
    each per knock; every change goes through the methods here."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.ring = FirstStepRing(self.limit)
        self.by_source: dict[int, list[Progress]] = {}  # advanced entries, never empty
        self._advanced = 0
        self._deadlines: list[tuple[float, int, Progress]] = []
        self._ticket = itertools.count()

    @property
    def count(self) -> int:
        return self.ring.weight + self._advanced

    def first(self, key: int) -> tuple[Start, float] | None:
        """The source's first-step entry: what it started and when."""
        return self.ring.find(key)

    def advanced(self, key: int) -> list[Progress]:
        return self.by_source.get(key, [])

    def drop_source(self, key: int) -> None:
        """Forget everything the source had."""
        self.ring.remove(key)
        self.drop_advanced(key)

    def drop_advanced(self, key: int) -> None:
        """Forget the source's advanced entries: all it has, as the caller knows."""
        for progress in self.by_source.pop(key, ()):
            progress.alive = False
            self._advanced -= 1

    def put_first(self, key: int, start: Start, at: float) -> None:
        """Record that the source matched a first step (it must have no first-step entry)."""
        if start.weight > self.limit - self._advanced:
            return  # it would push out a source further along: the least advanced is this one
        ring = self.ring
        ring.put(key, start, at)
        while ring.weight + self._advanced > self.limit:
            ring.pop_oldest(live_only=True)

    def put_advanced(self, progress: Progress) -> None:
        """Add progress at step two or later, in place of entries of the same source
        dropped before: this never takes the table over its limit."""
        self.by_source.setdefault(progress.key, []).append(progress)
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
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] < now:
            progress = heapq.heappop(deadlines)[2]
            if progress.alive:
                self._remove(progress)
                expired.append(progress)
        self.ring.drop_stale(now)
        return expired

    def next_due(self) -> float:
        """When `expire` can next have something to do."""
        due = self._deadlines[0][0] if self._deadlines else math.inf
        oldest = self.ring.oldest_due()
        return oldest if oldest < due else due

    def rebuilt(self, limit: int, plans: set[Plan]) -> ProgressTable:
        """A new table of `limit` entries with this one's progress in `plans`,
        the least advanced, oldest left out first when they do not all fit."""
        table = ProgressTable(limit)
        advanced = [p for ps in self.by_source.values() for p in ps if p.plan in plans]
        advanced.sort(key=lambda p: (p.n, p.last_at), reverse=True)
        for progress in advanced[: table.limit]:
            table.put_advanced(progress)
        kept: dict[int, Start | None] = {}  # old start's id -> its part in `plans`
        for key, start, at in list(self.ring):
            if id(start) not in kept:
                kept[id(start)] = Start.of(r for r in start.routes if r.plan in plans)
            if (new := kept[id(start)]) is not None:
                table.put_first(key, new, at)
        return table

    def _remove(self, progress: Progress) -> None:
        progress.alive = False
        self._advanced -= 1
        siblings = self.by_source[progress.key]
        siblings.remove(progress)
        if not siblings:
            del self.by_source[progress.key]
