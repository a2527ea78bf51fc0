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
BAN, UNBAN = Action.BAN, Action.UNBAN  # an enum member lookup costs 0.1 us a decision


class Guard:
    """Counts failures per source and bans a source that fails too often."""

    def __init__(self, policy: Bruteforce, limit: int) -> None:
        self.policy = policy
        self.limit = max(1, limit)
        self._failures: OrderedDict[int, _Record] = OrderedDict()
        self._front: float | None = None  # the first record's newest failure, while known
        self._bans: dict[int, BanState] = {}
        self.banned_keys = self._bans.keys()  # a live, read-only view: `key in` it per knock
        self._ends: list[tuple[float, int]] = []
        self.due = math.inf  # when `expire` can next lift a ban: the heap's first end

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
        self._front = None  # the records move: the first one may change
        times, last_stamp = self._failures.pop(key, ((), None))
        if stamp is not None and stamp == last_stamp and not self._is_stale(times, now):
            self._failures[key] = (times, last_stamp)
            return []
        window, most = self.policy.window, self.policy.max_failures
        recent = [t for t in times if now - t <= window] if times else []
        recent.append(at)
        if len(recent) >= most:
            return self.ban(key, src, at)
        keep = tuple(recent[len(recent) - most + 1 :])
        self._failures[key] = (keep, last_stamp if stamp is None else stamp)
        self._forget_stale(now)
        if len(self._failures) > self.limit:
            self._failures.popitem(last=False)
            self._front = None
        return []

    def ban(
        self, key: int, src: IPAddress, at: float, until: float | None = None
    ) -> list[Decision]:
        """Ban `src` from `at`; returns the ban (and any ban lifted to make room)."""
        if key in self._bans:
            return []
        lifted = self._lift_soonest(at) if len(self._bans) >= self.limit else []
        self._failures.pop(key, None)
        self._front = None
        ban = BanState(src, at + self.policy.ban_for if until is None else until)
        self._bans[key] = ban
        heapq.heappush(self._ends, (ban.until, key))
        self.due = self._ends[0][0]
        return [*lifted, Decision(at, BAN, src, expires=ban.until)]

    def expire(self, now: float) -> list[Decision]:
        """Lift bans that ended by `now`; forget failure records older than the window.

        Forgetting stale records never calls for a sweep, but the tracker calls this
        at every sweep: which records are gone when is part of what `fail` decides."""
        lifted: list[Decision] = []
        ends = self._ends
        while ends and ends[0][0] <= now:
            until, key = heapq.heappop(ends)
            ban = self._bans.get(key)
            if ban is not None and ban.until == until:
                del self._bans[key]
                lifted.append(Decision(until, UNBAN, ban.src))
        self.due = ends[0][0] if ends else math.inf
        self._forget_stale(now)
        return lifted

    def _forget_stale(self, now: float) -> None:
        """Drop the records updated longest ago while no failure of theirs counts any more.

        It runs at every sweep: while the first record is known and still counts,
        that is all there is to check (`_is_stale`, spelled out)."""
        failures, window = self._failures, self.policy.window
        newest = self._front
        if newest is not None and not now - newest > window:
            return
        while failures:
            times = next(iter(failures.values()))[0]
            if times:
                newest = max(times)
                if not now - newest > window:
                    self._front = newest
                    return
            failures.popitem(last=False)
        self._front = None

    def _is_stale(self, times: tuple[float, ...], now: float) -> bool:
        """Whether no failure of a record counts any more: pruning it changes nothing."""
        return not times or now - max(times) > self.policy.window

    def _lift_soonest(self, at: float) -> list[Decision]:
        """Lift the ban that would end soonest (`ban` pushes the new one right after)."""
        while self._ends:
            until, key = heapq.heappop(self._ends)
            ban = self._bans.get(key)
            if ban is not None and ban.until == until:
                del self._bans[key]
                return [Decision(at, UNBAN, ban.src)]
        return []
