"""The knock tracker: a pure state machine from knocks to decisions.

No I/O, no threads, no clock: `feed(knock)` uses the knock's event time and
`tick(now)` the time the caller passes. docs/semantics.md states every rule;
tests/test_tracker.py pins each one under the rule's name.

    paths     tracker_general.General      any knock, by the rules (views of progress)
              tracker_core.Core            shared state: completions, failures, time
    progress  tracker_table.ProgressTable  bounded two-tier (source, sequence) table
              tracker_ring.FirstStepRing   its first-step tier, built for floods
    routes    tracker_routes.FirstSteps    which sequences a knock can start
    failures  tracker_guard.Guard          failure counts and bans
    grants    tracker_grants.Grants        open grants, expiries, once-a-second refresh
    spent     tracker_spent.Spent          used one-time lines and TOTP periods
    state     tracker_state.TrackerState   what survives a restart, as JSON

`feed` is the hot path: a replayed log or a flood sends every knock through
it. Almost every knock has one of four shapes (a source with no progress, a
second step after a first, a next step after one advanced entry, the
completing step), and the lanes below take those with a few comparisons and
no intermediate objects; any other shape, or any doubt, goes to the general
path, which gives the same answer more slowly (tests/test_tracker_fast.py).
"""

from __future__ import annotations

import math
from ipaddress import IPv4Address
from operator import attrgetter

from .models import Decision, IPAddress, Knock
from .schema import Config, Step
from .tracker_general import General
from .tracker_grants import Grant
from .tracker_routes import FirstSteps, Plan, Route
from .tracker_state import BanState, GrantState, TrackerState
from .tracker_table import V6, Progress, source_key

__all__ = ["BanState", "GrantState", "Tracker", "TrackerState"]


class Tracker(General):
    def __init__(self, config: Config, *, state: TrackerState | None = None) -> None:
        super().__init__(config, state)

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
        """Follow one knock; the decisions it (and the time it carries) causes.

        What the knock itself decides is all at its time, in order already:
        only what the sweep adds needs sorting in. The source key is
        `source_key` spelled out, and the lane is picked here, as every knock
        pays for this: see `_fresh`, `_second`, `_onward`."""
        at = knock.at
        if at > self._clock:  # noqa: PLR1730 - max() costs a call, on every knock
            self._clock = at
        swept = None if self._clock < self._due else self._sweep(self._clock)
        src = knock.src
        key = src.__int__() if isinstance(src, IPv4Address) else src.__int__() | V6
        if key in self._guard.banned_keys:
            out: list[Decision] = []
        else:
            table = self._table
            slot, advanced = table.ring.slot(key), table.by_source.get(key)
            if slot >= 0:
                out = (
                    self._second(key, knock, slot) if advanced is None else self._knock(key, knock)
                )
            elif advanced is None:
                out = self._fresh(key, knock)
            else:
                out = self._onward(key, knock, advanced)
        return _ordered(swept + out) if swept else out

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
            self._open((source_key(src), sequence), Grant(src, sequence, plan.ports, until, now))
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
        self._config, self._window = config, config.duplicate_window
        self._plans = {s.name: _same(old.get(s.name), s) or Plan.of(s) for s in config.sequences}
        self._guard.policy, self._guard.limit = config.bruteforce, config.limits.max_tracked
        self._table = self._table.rebuilt(config.limits.max_tracked, set(self._plans.values()))
        self._first = FirstSteps(self._plans.values(), self._spent.lines)
        self._due = -math.inf

    # -- the lanes ---------------------------------------------------------------

    def _fresh(self, key: int, knock: Knock) -> list[Decision]:
        """A source with no progress: the knock starts something or nothing.
        Most knocks are on no first step's port: that is looked up here first."""
        first = self._first
        if not (first.periodic or knock.dport in first.ports):
            return []
        start = first.start(knock)
        if start is None:
            return []
        if not start.waits:
            return self._knock(key, knock)
        at = knock.at
        self._table.put_first(key, start, at)
        due = at + start.wait
        self._due = due if due < self._due else self._due
        return []

    def _second(self, key: int, knock: Knock, slot: int) -> list[Decision]:
        """A source that matched one first step: the knock may be its second step."""
        ring = self._table.ring
        start, first_at = ring.starts[slot], ring.ats[slot]
        assert start is not None
        route = start.lone
        if route is None or not self._clock <= first_at + route.plan.wait:
            return self._knock(key, knock)
        return self._follow(key, knock, start.routes, 1, first_at, first_at, slot)

    def _onward(self, key: int, knock: Knock, advanced: list[Progress]) -> list[Decision]:
        """A source with advanced progress: the knock may be its next or last step."""
        progress = advanced[0]
        routes = progress.routes
        if len(advanced) != 1 or len(routes) != 1 or not routes[0].plain:
            return self._knock(key, knock)
        first_at, last_at = progress.first_at, progress.last_at
        return self._follow(key, knock, routes, progress.n, first_at, last_at, -1)

    def _follow(  # noqa: PLR0917 - one call per knock that has progress: no keywords
        self,
        key: int,
        knock: Knock,
        routes: tuple[Route, ...],
        n: int,
        first_at: float,
        last_at: float,
        slot: int,
    ) -> list[Decision]:
        """Take a knock against a source's one progress, `n` steps along its one plain
        route (held in ring slot `slot`, or advanced when -1), as `_knock` would:
        ignore it (out of order, or a repeat of step n within the duplicate window),
        advance or complete, or reset with one failure. A knock that starts a
        sequence is left to `_knock`."""
        at, port, proto = knock.at, knock.dport, knock.proto
        steps = routes[0].steps
        done = steps[n - 1]
        if at < last_at or (
            done.port == port and done.proto == proto and at - last_at <= self._window
        ):
            return []
        first = self._first
        if (first.periodic or port in first.ports) and first.start(knock) is not None:
            return self._knock(key, knock)
        if slot < 0:
            self._table.drop_advanced(key)
        else:
            self._table.ring.clear(slot)
        if not _accepts(steps[n], knock):
            return self._fail(key, knock.src, at)
        if len(steps) == n + 1:
            return self._decide(key, knock, routes[0])
        progress = Progress(key, knock.src, routes[0].plan, n + 1, routes, first_at, at)
        self._table.put_advanced(progress)
        due = progress.deadline
        self._due = due if due < self._due else self._due
        return []


def _accepts(step: Step, knock: Knock) -> bool:
    """`step.accepts(knock)`, with no call for a step without flags (most steps)."""
    if step.port != knock.dport or step.proto != knock.proto:
        return False
    return not (step.flags_set or step.flags_unset) or step.accepts(knock)


def _ordered(decisions: list[Decision]) -> list[Decision]:
    return decisions if len(decisions) < 2 else sorted(decisions, key=attrgetter("at"))


def _same(plan: Plan | None, spec: object) -> Plan | None:
    return plan if plan is not None and plan.spec == spec else None
