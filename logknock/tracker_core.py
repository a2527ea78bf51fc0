"""The tracker's state and what every knock path shares: completions, failures, time.

`Tracker` (tracker.py) is built in three layers so each file stays readable:
`Core` here owns the tables and the clock, `General` (tracker_general.py)
follows any knock by the rules of docs/semantics.md, and `Tracker` adds the
public calls and the lanes that take the common knocks without building
views. Time moves only forward: the clock is the latest time seen, and
`_due` is the earliest time anything can expire, so most calls skip the sweep.
"""

from __future__ import annotations

import math

from .models import Decision, IPAddress, Knock
from .schema import Config
from .tracker_grants import Grant, GrantKey, Grants
from .tracker_guard import Guard
from .tracker_routes import FirstSteps, Plan, Route
from .tracker_spent import Spent
from .tracker_state import TrackerState
from .tracker_table import ProgressTable, source_key


class Core:
    def __init__(self, config: Config, state: TrackerState | None) -> None:
        self._config = config
        self._window = config.duplicate_window
        self._plans = {spec.name: Plan.of(spec) for spec in config.sequences}
        self._table = ProgressTable(config.limits.max_tracked)
        self._guard = Guard(config.bruteforce, config.limits.max_tracked)
        self._grants = Grants()
        self._spent = Spent()
        self._clock = -math.inf
        self._due = -math.inf  # nothing can expire before this: `_advance` skips till then
        self.revision = 0  # grows whenever what snapshot() returns changes
        if state is not None:
            self._restore(state)
        self._first = FirstSteps(self._plans.values(), self._spent.lines)

    # -- completions -----------------------------------------------------------

    def _complete(self, key: int, knock: Knock, route: Route) -> list[Decision]:
        """What completing `route` does; a used line or period is recorded first."""
        if self._spent.spend(key, knock.src, route):
            self._first.forget(route)
            self._soon(self._spent.due)
            self.revision += 1
        return self._decide(key, knock, route)

    def _decide(self, key: int, knock: Knock, route: Route) -> list[Decision]:
        """What completing `route` opens or closes (nothing to spend: a `knock:` list
        comes straight here)."""
        plan, at = route.plan, knock.at
        spec = plan.spec
        if spec.closes:
            return self._close((key, spec.closes), at)
        gkey = (key, spec.name)
        grants = self._grants
        if grants.quiet(gkey, at, self._clock):
            return []
        if spec.toggle and grants.get(gkey) is not None:
            return self._close(gkey, at)
        return [self._open(gkey, Grant(knock.src, spec.name, plan.ports, at + spec.open_for, at))]

    def _open(self, gkey: GrantKey, grant: Grant) -> Decision:
        self.revision += 1
        self._soon(grant.expires)
        return self._grants.open(gkey, grant)

    def _close(self, gkey: GrantKey, at: float) -> list[Decision]:
        closed = self._grants.close(gkey, at)
        self.revision += len(closed)
        return closed

    def _fail(
        self, key: int, src: IPAddress, at: float, stamp: float | None = None
    ) -> list[Decision]:
        banned = self._guard.fail(key, src, at, self._clock, stamp)
        if banned:  # the ban's end is the only new time: without one, nothing to note
            self._soon(self._guard.due)
            self._table.drop_source(key)
            self.revision += 1
        return banned

    # -- time ------------------------------------------------------------------

    def _advance(self, now: float) -> list[Decision]:
        """Everything due by `now` (or by the latest time seen, if later)."""
        self._clock = now if now > self._clock else self._clock
        return [] if self._clock < self._due else self._sweep(self._clock)

    def _soon(self, due: float) -> None:
        """Something new may expire at `due`: make sure `_advance` looks then."""
        self._due = due if due < self._due else self._due

    def _sweep(self, now: float) -> list[Decision]:
        """Close, time out, lift and prune what is due by `now`; note when to look next.

        The failure table runs at every sweep, even with nothing due: it forgets
        stale records on the way, and when it does is part of what it decides
        later. The other parts run only when something of theirs is due."""
        grants, guard, spent = self._grants, self._guard, self._spent
        out = grants.expire(now) if grants.due <= now else []
        for progress in self._table.expire(now):
            out += self._fail(progress.key, progress.src, progress.deadline, progress.last_at)
        lifted = guard.expire(now)
        if out or lifted:
            self.revision += 1
        if spent.due <= now:
            spent.prune(now, self._plans)
        self._due = min(grants.due, self._table.next_due(), guard.due, spent.due)
        return out + lifted if lifted else out

    def _restore(self, state: TrackerState) -> None:
        for grant in state.grants:
            self._grants.open((source_key(grant.src), grant.sequence), Grant.of(grant))
        for ban in state.bans:
            self._guard.ban(source_key(ban.src), ban.src, ban.until, until=ban.until)
        self._spent.restore(state)
