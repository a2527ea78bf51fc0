"""The knock tracker: a pure state machine from knocks to decisions.

No I/O, no threads, no clock: `feed(knock)` uses the knock's event time and
`tick(now)` the time the caller passes. docs/semantics.md states every rule;
tests/test_tracker.py pins each one under the rule's name.

    progress  tracker_table.ProgressTable  bounded two-tier (source, sequence) table
              tracker_ring.FirstStepRing   its first-step tier, built for floods
    routes    tracker_routes.FirstSteps    which sequences a knock can start
    failures  tracker_guard.Guard          failure counts and bans
    grants    tracker_grants.Grants        open grants, expiries, once-a-second refresh
    spent     tracker_spent.Spent          used one-time lines and TOTP periods
    state     tracker_state.TrackerState   what survives a restart, as JSON

Time moves only forward: the clock is the latest time seen. `_advance` skips
all expiry work until the earliest time anything can be due.
"""

from __future__ import annotations

import math
from operator import attrgetter

from .models import Decision, IPAddress, Knock
from .schema import Config
from .tracker_grants import GrantKey, Grants
from .tracker_guard import Guard
from .tracker_routes import FirstSteps, Plan, Route, Start
from .tracker_spent import Spent
from .tracker_state import BanState, GrantState, TrackerState
from .tracker_table import Progress, ProgressTable, source_key

__all__ = ["BanState", "GrantState", "Tracker", "TrackerState"]


class Tracker:
    def __init__(self, config: Config, *, state: TrackerState | None = None) -> None:
        self._config = config
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

    @property
    def grants(self) -> tuple[GrantState, ...]:
        return self._grants.states()

    @property
    def bans(self) -> tuple[BanState, ...]:
        return self._guard.bans

    @property
    def tracked_count(self) -> int:
        """Progress entries held: one per (source, sequence) that is part way."""
        return self._table.count

    def feed(self, knock: Knock) -> list[Decision]:
        """Follow one knock; the decisions it (and the time it carries) causes."""
        out = self._advance(knock.at)
        key = source_key(knock.src)
        if not self._guard.banned(key):
            out += self._knock(key, knock)
        return _ordered(out)

    def tick(self, now: float) -> list[Decision]:
        """Close expired grants, lift ended bans, count timed-out progress."""
        return _ordered(self._advance(now))

    def grant(
        self, src: IPAddress, sequence: str, now: float, duration: float | None = None
    ) -> list[Decision]:
        """Open a sequence's ports for `src` by hand (or refresh the grant)."""
        plan = self._plans.get(sequence)
        if plan is None or plan.spec.closes:
            raise ValueError(f"no sequence named {sequence!r} opens anything")
        out = self._advance(now)
        until = now + (plan.spec.open_for if duration is None else duration)
        out.append(
            self._open(
                (source_key(src), sequence), GrantState(src, sequence, plan.ports, until, now)
            )
        )
        return _ordered(out)

    def revoke(self, src: IPAddress, now: float, sequence: str | None = None) -> list[Decision]:
        """Close one grant of `src`, or all of them."""
        out = self._advance(now)
        key = source_key(src)
        closed = (
            self._grants.close_source(key, now)
            if sequence is None
            else self._grants.close((key, sequence), now)
        )
        self.revision += len(closed)
        return _ordered(out + closed)

    def snapshot(self) -> TrackerState:
        """Grants, bans, used one-time lines and TOTP periods: what a restart keeps."""
        grants, bans = self._grants.states(), self._guard.bans
        return TrackerState(grants, bans, self._spent.one_time(), self._spent.totp())

    def reconfigure(self, config: Config) -> None:
        """Take a new configuration: grants, bans and used lines stay; progress
        stays only for sequences that exist unchanged."""
        old = self._plans
        self._config = config
        self._plans = {s.name: _same(old.get(s.name), s) or Plan.of(s) for s in config.sequences}
        self._guard.policy, self._guard.limit = config.bruteforce, config.limits.max_tracked
        self._table = self._table.rebuilt(config.limits.max_tracked, set(self._plans.values()))
        self._first = FirstSteps(self._plans.values(), self._spent.lines)
        self._due = -math.inf

    # -- a knock ---------------------------------------------------------------

    def _knock(self, key: int, knock: Knock) -> list[Decision]:
        first, advanced = self._table.first(key), self._table.advanced(key)
        if first is None and not advanced:  # most knocks: a source with no progress
            return self._begin(key, knock, self._start(key, knock, set()))
        views = _views(key, first, advanced, knock, self._clock)
        if views and _ignored(views, knock, self._config.duplicate_window):
            return []
        moved, done = self._step(key, views, knock)
        start = self._start(key, knock, {p.plan for p in moved} | {r.plan for r in done})
        self._table.drop_source(key)
        for progress in moved:
            self._table.put_advanced(progress)
            self._soon(progress.deadline)
        out = [d for route in done for d in self._complete(key, knock, route)]
        out += self._begin(key, knock, start)
        if views and not (moved or done or start):
            out += self._fail(key, knock.src, knock.at)
        return out

    def _begin(self, key: int, knock: Knock, start: Start | None) -> list[Decision]:
        """Record the first steps a knock matched; a one-step sequence completes at once."""
        if start is None:
            return []
        waiting = Start.of(r for r in start.routes if len(r.steps) > 1) if start.single else start
        if waiting is not None:
            self._table.put_first(key, waiting, knock.at)
            self._soon(knock.at + waiting.wait)
        if not start.single:
            return []
        singles = [r for r in start.routes if len(r.steps) == 1]
        return [d for route in singles for d in self._complete(key, knock, route)]

    def _step(
        self, key: int, views: list[Progress], knock: Knock
    ) -> tuple[list[Progress], list[Route]]:
        """Advance each view the knock is the next step of; the rest are reset."""
        moved: list[Progress] = []
        done: list[Route] = []
        for view in views:
            n = view.n
            routes = tuple(
                r for r in view.routes if r.steps[n].accepts(knock) and self._spent.usable(key, r)
            )
            finished = [r for r in routes if len(r.steps) == n + 1]
            if finished:
                done.append(finished[0])
            elif routes:
                moved.append(
                    Progress(key, knock.src, view.plan, n + 1, routes, view.first_at, knock.at)
                )
        return moved, done

    def _start(self, key: int, knock: Knock, busy: set[Plan]) -> Start | None:
        """What the knock starts afresh, leaving out sequences it just advanced."""
        start = self._first.start(knock)
        if start is None or (not busy and not start.totp):
            return start
        return Start.of(
            r for r in start.routes if r.plan not in busy and self._spent.usable(key, r)
        )

    # -- completions -----------------------------------------------------------

    def _complete(self, key: int, knock: Knock, route: Route) -> list[Decision]:
        """What completing `route` does; a used line or period is recorded first."""
        if self._spent.spend(key, knock.src, route):
            self._first.forget(route)
            self._soon(self._spent.next_due())
            self.revision += 1
        spec, at = route.plan.spec, knock.at
        if spec.closes:
            return self._close((key, spec.closes), at)
        gkey = (key, spec.name)
        if self._grants.quiet(gkey, at, self._clock):
            return []
        self._soon(self._grants.next_due())
        if spec.toggle and self._grants.get(gkey) is not None:
            return self._close(gkey, at)
        state = GrantState(knock.src, spec.name, route.plan.ports, at + spec.open_for, at)
        return [self._open(gkey, state)]

    def _open(self, gkey: GrantKey, state: GrantState) -> Decision:
        self.revision += 1
        self._soon(state.expires)
        return self._grants.open(gkey, state)

    def _close(self, gkey: GrantKey, at: float) -> list[Decision]:
        closed = self._grants.close(gkey, at)
        self.revision += len(closed)
        return closed

    def _fail(
        self, key: int, src: IPAddress, at: float, stamp: float | None = None
    ) -> list[Decision]:
        banned = self._guard.fail(key, src, at, self._clock, stamp)
        self._soon(self._guard.next_due())
        if banned:
            self._table.drop_source(key)
            self.revision += 1
        return banned

    # -- time ------------------------------------------------------------------

    def _advance(self, now: float) -> list[Decision]:
        """Everything due by `now` (or by the latest time seen, if later)."""
        self._clock = max(self._clock, now)
        return [] if self._clock < self._due else self._sweep(self._clock)

    def _soon(self, due: float) -> None:
        """Something new may expire at `due`: make sure `_advance` looks then."""
        self._due = min(self._due, due)

    def _sweep(self, now: float) -> list[Decision]:
        """Close, time out, lift and prune what is due by `now`; note when to look next."""
        out = self._grants.expire(now)
        for progress in self._table.expire(now):
            out += self._fail(progress.key, progress.src, progress.deadline, progress.last_at)
        lifted = self._guard.expire(now)
        if out or lifted:
            self.revision += 1
        self._spent.prune(now, self._plans)
        self._due = min(
            self._grants.next_due(),
            self._table.next_due(),
            self._guard.next_due(),
            self._spent.next_due(),
        )
        return out + lifted if lifted else out

    def _restore(self, state: TrackerState) -> None:
        for grant in state.grants:
            self._grants.open((source_key(grant.src), grant.sequence), grant)
        for ban in state.bans:
            self._guard.ban(source_key(ban.src), ban.src, ban.until, until=ban.until)
        self._spent.restore(state)


def _views(
    key: int,
    first: tuple[Start, float] | None,
    advanced: list[Progress],
    knock: Knock,
    clock: float,
) -> list[Progress]:
    """A source's live progress, first-step entries unpacked.

    Progress is live while the clock (the latest time seen) is at or before its
    deadline; advanced entries past it were already expired by `_advance`.
    """
    views = list(advanced)
    if first is not None:
        start, at = first
        for plan in start.plans:
            if clock <= at + plan.wait:
                routes = tuple(r for r in start.routes if r.plan is plan)
                views.append(Progress(key, knock.src, plan, 1, routes, at, at))
    return views


def _ignored(views: list[Progress], knock: Knock, window: float) -> bool:
    """An out-of-order knock, or a repeat of the step just matched within `window`."""
    last = max(views, key=attrgetter("last_at"))
    if knock.at < last.last_at:
        return True
    step = last.routes[0].steps[last.n - 1]
    repeat = step.port == knock.dport and step.proto == knock.proto
    return repeat and knock.at - last.last_at <= window


def _ordered(decisions: list[Decision]) -> list[Decision]:
    return decisions if len(decisions) < 2 else sorted(decisions, key=attrgetter("at"))


def _same(plan: Plan | None, spec: object) -> Plan | None:
    return plan if plan is not None and plan.spec == spec else None
