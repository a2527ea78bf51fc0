"""What can be knocked only once: used one-time lines and TOTP periods.

A one-time line is named by its text, so editing the file does not move the
record onto another line. A TOTP period is recorded per (source, sequence)
and forgotten once it is more than two periods old; from then on no period
that old is usable at all, so a very late log record cannot replay it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .models import IPAddress
from .totp import counter_at
from .tracker_routes import Plan, Route
from .tracker_state import TotpUse, TrackerState
from .tracker_table import source_key

ReplayKey = tuple[int, str, int]  # (source key, sequence, period counter)


class Spent:
    def __init__(self) -> None:
        self.lines: dict[str, set[str]] = {}  # sequence -> used one-time lines
        self._periods: dict[ReplayKey, IPAddress] = {}
        self._floor: dict[str, int] = {}  # sequence -> oldest period still recorded
        self._prune_at = -math.inf
        self.due = math.inf  # when `prune` can next have something to do

    def usable(self, key: int, route: Route) -> bool:
        if route.line is not None:
            return route.line not in self.lines.get(route.plan.name, ())
        if route.counter is not None:
            name, counter = route.plan.name, route.counter
            too_old = counter < self._floor.get(name, counter)
            return not too_old and (key, name, counter) not in self._periods
        return True

    def spend(self, key: int, src: IPAddress, route: Route) -> bool:
        """Record that `route` completed; False when it can be knocked again."""
        if route.line is not None:
            self.lines.setdefault(route.plan.name, set()).add(route.line)
            return True
        if route.counter is not None:
            self._periods[key, route.plan.name, route.counter] = src
            self.due = self._prune_at
            return True
        return False

    def prune(self, now: float, plans: Mapping[str, Plan]) -> None:
        """Forget TOTP periods more than two periods before `now` (checked once a period)."""
        if not self._periods or now < self._prune_at:
            return
        totps = {name: p.spec.totp for name, p in plans.items() if p.spec.totp is not None}
        self._floor = {name: counter_at(totp, now) - 2 for name, totp in totps.items()}
        old = [k for k in self._periods if k[1] not in totps or k[2] < self._floor[k[1]]]
        for k in old:
            del self._periods[k]
        self._prune_at = now + min((totp.period for totp in totps.values()), default=30.0)
        self.due = self._prune_at if self._periods else math.inf

    def one_time(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return tuple((name, tuple(sorted(lines))) for name, lines in sorted(self.lines.items()))

    def totp(self) -> tuple[TotpUse, ...]:
        uses = (TotpUse(src, name, n) for (_, name, n), src in self._periods.items())
        return tuple(sorted(uses, key=lambda u: (u.sequence, u.counter, str(u.src))))

    def restore(self, state: TrackerState) -> None:
        for name, lines in state.one_time:
            self.lines.setdefault(name, set()).update(lines)
        for use in state.totp:
            self._periods[source_key(use.src), use.sequence, use.counter] = use.src
        self.due = self._prune_at if self._periods else math.inf
