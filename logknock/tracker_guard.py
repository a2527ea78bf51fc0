"""Failures and bans: the tracker's defence against guessing.

Failure records exist only for sources that had progress, and at most
`limit` of them: when full, the record updated longest ago is forgotten. A
record keeps the last `max_failures - 1` failure times, and goes once the
clock is more than `window` past all of them, when none counts any more.
Bans are capped at `limit` too: a new ban past the cap lifts the ban that
would end soonest, early.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict

from .models import Action, Decision, IPAddress
from .schema import Bruteforce
from .tracker_state import BanState

_Record = tuple[tuple[float, ...], float | None]  # failure times, last timeout stamp


class Guard:
    """Counts failures per source and bans a source that fails too often."""

    def __init__(self, policy: Bruteforce, limit: int) -> None:
        self.policy = policy
        self.limit = max(1, limit)
        self._failures: OrderedDict[int, _Record] = OrderedDict()
        self._bans: dict[int, BanState] = {}
        self._ends: list[tuple[float, int]] = []

    @property
    def bans(self) -> tuple[BanState, ...]:
        return tuple(sorted(self._bans.values(), key=lambda ban: (ban.until, str(ban.src))))

    @property
    def failing(self) -> int:
        """How many sources have failure records."""
        return len(self._failures)

    def banned(self, key: int) -> bool:
        return key in self._bans

    def fail(
        self, key: int, src: IPAddress, at: float, now: float, stamp: float | None = None
    ) -> list[Decision]:
        """Count one failure at `at` (the clock being `now`); returns the ban it causes.

        A failure counts while the clock is at most `window` past it. A timeout
        passes the time of the knock that timed out as `stamp`: the other
        sequences that knock left waiting time out with the same stamp and are
        not counted again while the record is fresh.
        """
        if key in self._bans:
            return []
        times, last_stamp = self._failures.pop(key, ((), None))
        if stamp is not None and stamp == last_stamp and not self._is_stale(times, now):
            self._failures[key] = (times, last_stamp)
            return []
        recent = (*(t for t in times if now - t <= self.policy.window), at)
        if len(recent) >= self.policy.max_failures:
            return self.ban(key, src, at)
        keep = recent[len(recent) - self.policy.max_failures + 1 :]
        self._failures[key] = (keep, last_stamp if stamp is None else stamp)
        self._forget_stale(now)
        if len(self._failures) > self.limit:
            self._failures.popitem(last=False)
        return []

    def ban(
        self, key: int, src: IPAddress, at: float, until: float | None = None
    ) -> list[Decision]:
        """Ban `src` from `at`; returns the ban (and any ban lifted to make room)."""
        if key in self._bans:
            return []
        lifted = self._lift_soonest(at) if len(self._bans) >= self.limit else []
        self._failures.pop(key, None)
        ban = BanState(src, at + self.policy.ban_for if until is None else until)
        self._bans[key] = ban
        heapq.heappush(self._ends, (ban.until, key))
        return [*lifted, Decision(at, Action.BAN, src, expires=ban.until)]

    def expire(self, now: float) -> list[Decision]:
        """Lift bans that ended by `now`; forget failure records older than the window."""
        lifted: list[Decision] = []
        while self._ends and self._ends[0][0] <= now:
            until, key = heapq.heappop(self._ends)
            ban = self._bans.get(key)
            if ban is not None and ban.until == until:
                del self._bans[key]
                lifted.append(Decision(until, Action.UNBAN, ban.src))
        self._forget_stale(now)
        return lifted

    def next_due(self) -> float:
        """When `expire` can next lift a ban. Forgetting stale failure records is
        housekeeping, done on the way (`fail`, `expire`): it never calls for a sweep."""
        return self._ends[0][0] if self._ends else math.inf

    def _forget_stale(self, now: float) -> None:
        """Drop the records updated longest ago while no failure of theirs counts any more."""
        while self._failures and self._is_stale(next(iter(self._failures.values()))[0], now):
            self._failures.popitem(last=False)

    def _is_stale(self, times: tuple[float, ...], now: float) -> bool:
        """Whether no failure of a record counts any more: pruning it changes nothing."""
        return not times or now - max(times) > self.policy.window

    def _lift_soonest(self, at: float) -> list[Decision]:
        while self._ends:
            until, key = heapq.heappop(self._ends)
            ban = self._bans.get(key)
            if ban is not None and ban.until == until:
                del self._bans[key]
                return [Decision(at, Action.UNBAN, ban.src)]
        return []
