"""The tracker's compiled view of the configuration: plans, routes, first steps.

A `Plan` is one configured sequence. A `Route` is one list of steps that
completes a plan: the `knock:` list, one unused line of a one-time file, or
the ports of one TOTP period. `FirstSteps` answers, for a knock, which routes
it starts, looking only at routes whose first step has the knock's port and
protocol, so a knock's cost does not grow with the number of sequences.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .models import Knock
from .schema import Sequence, Step
from .totp import counter_at, totp_steps

PortKey = tuple[str, int]  # (proto, port)
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """One configured sequence, as the tracker follows it."""

    spec: Sequence
    ports: tuple[str, ...]  # what a grant opens: "22/tcp"
    wait: float  # how long a first step waits for the second

    @classmethod
    def of(cls, spec: Sequence) -> Plan:
        wait = min(spec.step_timeout, spec.sequence_timeout)
        return cls(spec, tuple(str(port) for port in spec.open), wait)

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True, eq=False)
class Route:
    """One list of steps that completes `plan`."""

    plan: Plan
    steps: tuple[Step, ...]
    line: str | None = None  # a one-time line, as recorded when used
    counter: int | None = None  # a TOTP period

    @property
    def plain(self) -> bool:
        """A `knock:` list: nothing about it is spent when it completes."""
        return self.line is None and self.counter is None


@dataclass(frozen=True, slots=True, eq=False)
class Start:
    """The routes one first-step knock began; shared by every source that sent it."""

    routes: tuple[Route, ...]
    plans: tuple[Plan, ...]  # distinct, in route order: the entries this start counts as
    wait: float  # the longest any of them waits
    totp: bool  # some route is a TOTP period: filter the source's used periods
    single: bool  # some route has one step: the knock completes it
    lone: Route | None  # the only route, when it is a plain `knock:` list: the tracker's lanes
    weight: int  # len(plans): the progress entries this start counts as
    waits: bool  # no one-step and no TOTP route: the knock only records a first step

    @classmethod
    def of(cls, routes: Iterable[Route]) -> Start | None:
        chosen = tuple(routes)
        if not chosen:
            return None
        plans = tuple(dict.fromkeys(route.plan for route in chosen))
        wait = max(plan.wait for plan in plans)
        totp = any(r.counter is not None for r in chosen)
        single = any(len(r.steps) == 1 for r in chosen)
        lone = chosen[0] if len(chosen) == 1 and chosen[0].plain else None
        return cls(chosen, plans, wait, totp, single, lone, len(plans), not (totp or single))


def line_text(steps: tuple[Step, ...]) -> str:
    """How a one-time line is named in the state file: "7000/udp 8000/tcp"."""
    return " ".join(str(step) for step in steps)


def plan_routes(plan: Plan, used: frozenset[str] | set[str]) -> list[Route]:
    """The fixed routes of a plan: its knock list, or its unused one-time lines."""
    if plan.spec.knock:
        return [Route(plan, plan.spec.knock)]
    lines = ((steps, line_text(steps)) for steps in plan.spec.one_time)
    return [Route(plan, steps, line=text) for steps, text in lines if text not in used]


class FirstSteps:
    """Which routes a knock starts: an index by the (proto, port) of first steps."""

    def __init__(self, plans: Iterable[Plan], used: dict[str, set[str]]) -> None:
        plans = list(plans)
        self._fixed: dict[PortKey, list[Route]] = {}
        self._totp = [plan for plan in plans if plan.spec.totp is not None]
        self.periodic = bool(self._totp)  # some first steps change with time: ask `start`
        self._timed: dict[PortKey, list[Route]] = {}
        # the times the TOTP index holds for: all times when there is none to index
        self._valid = (math.inf, -math.inf) if self._totp else (-math.inf, math.inf)
        self._cache: dict[tuple[str, int, frozenset[str]], Start | None] = {}
        for plan in plans:
            for route in plan_routes(plan, used.get(plan.name, set())):
                self._add(self._fixed, route)
        # every first step's port, and more: `start` is None for a knock on any other
        # port, and the tracker's lanes check that themselves before asking
        self.ports = {port for _, port in self._fixed}

    def start(self, knock: Knock) -> Start | None:
        """The routes whose first step accepts `knock` (before per-source filters)."""
        if self._totp:
            low, high = self._valid
            if not low <= knock.at < high:
                self._index_periods(knock.at)
        if knock.dport not in self.ports:
            return None  # most knocks: no first step is on their port
        key = (knock.proto, knock.dport, knock.flags)
        try:
            return self._cache[key]
        except KeyError:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            found = self._cache[key] = self._compute(knock)
            return found

    def _compute(self, knock: Knock) -> Start | None:
        port = (knock.proto, knock.dport)
        found = self._fixed.get(port, []) + self._timed.get(port, [])
        return Start.of(r for r in found if r.steps[0].accepts(knock))

    def forget(self, route: Route) -> None:
        """Stop starting `route`: its one-time line has been used."""
        routes = self._fixed.get(_port_of(route.steps[0]), [])
        if route in routes:
            routes.remove(route)
        self._cache.clear()

    def _index_periods(self, t: float) -> None:
        """Index the current and previous period of every TOTP plan at time `t`."""
        self._timed.clear()
        self._cache.clear()
        low, high = -math.inf, math.inf
        for plan in self._totp:
            totp = plan.spec.totp
            assert totp is not None
            now = counter_at(totp, t)
            low, high = max(low, now * totp.period), min(high, (now + 1) * totp.period)
            for counter in (now, now - 1) if now > 0 else (now,):
                self._add(self._timed, Route(plan, totp_steps(totp, counter), counter=counter))
        self._valid = (low, high)
        self.ports = {port for _, port in self._fixed} | {port for _, port in self._timed}

    @staticmethod
    def _add(index: dict[PortKey, list[Route]], route: Route) -> None:
        index.setdefault(_port_of(route.steps[0]), []).append(route)


def _port_of(step: Step) -> PortKey:
    return (step.proto, step.port)
