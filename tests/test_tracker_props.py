"""The tracker against a small reference model, driven by hypothesis.

`Model` restates docs/semantics.md for plain `knock:` sequences in the most
direct way: dicts of progress per source, scanned on every call, no bounds.
`Differential` runs the tracker with room to spare and requires the same
decisions from both on every call. `Bounded` runs it with `max_tracked = 4`,
where the two may differ, and checks what must hold anyway: the table stays
within its bound, every open is backed by the knocks the source sent, every
open is closed exactly once in the end.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from logknock.models import Action, Decision, IPAddress, Knock
from logknock.schema import Bruteforce, Config, Limits, PortSpec, Sequence, Step
from logknock.tracker import Tracker
from logknock.tracker_ring import FirstStepRing
from logknock.tracker_routes import Plan, Route, Start

Port = tuple[int, str]
Seen = tuple[str, str | None, IPAddress, float, float | None]  # action, sequence, src, at, expires

SEQUENCES: dict[str, tuple[Port, ...]] = {
    "a": ((1, "udp"), (2, "udp"), (3, "udp")),
    "b": ((1, "udp"), (4, "tcp")),  # shares a's first step
    "c": ((5, "tcp"), (5, "tcp"), (2, "udp")),  # repeats a step
    "d": ((6, "udp"),),  # one step
}
PORTS = [(1, "udp"), (2, "udp"), (3, "udp"), (4, "tcp"), (5, "tcp"), (6, "udp"), (7, "udp")]
SOURCES = [ipaddress.ip_address(a) for a in ("198.18.0.1", "198.18.0.2", "2001:db8::3")]
DST = ipaddress.ip_address("198.18.1.1")
GAPS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 2.0, 2.5, 3.0, 3.25, 4.0, 8.0, -0.25, -1.0, -2.0]
STEP_TIMEOUT, SEQUENCE_TIMEOUT, OPEN_FOR, WINDOW = 3.0, 7.0, 5.0, 1.0
RULES = Bruteforce(max_failures=2, window=30.0, ban_for=15.0)


def make_config(max_tracked: int) -> Config:
    def sequence(name: str, steps: tuple[Port, ...]) -> Sequence:
        knock = tuple(Step(port, proto) for port, proto in steps)
        opens = (PortSpec(22, "tcp"),)
        return Sequence(name, knock, opens, OPEN_FOR, STEP_TIMEOUT, SEQUENCE_TIMEOUT)

    return Config(
        sequences=tuple(sequence(name, steps) for name, steps in SEQUENCES.items()),
        duplicate_window=WINDOW,
        bruteforce=RULES,
        limits=Limits(max_tracked),
    )


@dataclass
class Entry:
    n: int
    first: float
    last: float

    @property
    def deadline(self) -> float:
        return min(self.last + STEP_TIMEOUT, self.first + SEQUENCE_TIMEOUT)


class Model:
    """docs/semantics.md, rules 1-12, for plain sequences, without bounds."""

    def __init__(self) -> None:
        self.clock = -math.inf
        self.progress: dict[IPAddress, dict[str, Entry]] = {}
        self.last_port: dict[IPAddress, Port] = {}
        self.failures: dict[IPAddress, tuple[list[float], float | None]] = {}
        self.bans: dict[IPAddress, float] = {}
        self.grants: dict[tuple[IPAddress, str], float] = {}
        self.quiet: dict[tuple[IPAddress, str], float] = {}

    def tick(self, now: float) -> list[Seen]:
        self.clock = max(self.clock, now)
        out: list[Seen] = []
        for (src, name), expires in sorted(self.grants.items(), key=lambda item: item[1]):
            if expires <= self.clock:
                del self.grants[src, name]
                out.append(("close", name, src, expires, None))
        for deadline, src, name in sorted(self._timed_out(), key=lambda item: item[0]):
            entry = self.progress[src].pop(name, None)
            if entry is not None:
                out += self.fail(src, deadline, stamp=entry.last)
        for src, until in sorted(self.bans.items(), key=lambda item: item[1]):
            if until <= self.clock:
                del self.bans[src]
                out.append(("unban", None, src, until, None))
        return out

    def _timed_out(self) -> list[tuple[float, IPAddress, str]]:
        return [
            (entry.deadline, src, name)
            for src, entries in self.progress.items()
            for name, entry in entries.items()
            if entry.n >= 2 and entry.deadline < self.clock
        ]

    def feed(self, src: IPAddress, port: Port, at: float) -> list[Seen]:
        out = self.tick(at)
        if src in self.bans:
            return out
        live = {n: e for n, e in self.progress.get(src, {}).items() if self.clock <= e.deadline}
        if live and self._ignored(src, port, at, max(e.last for e in live.values())):
            return out
        new: dict[str, Entry] = {}
        done: list[str] = []
        for name, entry in live.items():
            steps = SEQUENCES[name]
            if steps[entry.n] == port and entry.n + 1 == len(steps):
                done.append(name)
            elif steps[entry.n] == port:
                new[name] = Entry(entry.n + 1, entry.first, at)
        for name, steps in SEQUENCES.items():
            if steps[0] == port and name not in new and name not in done:
                if len(steps) == 1:
                    done.append(name)
                else:
                    new[name] = Entry(1, at, at)
        self.progress[src], self.last_port[src] = new, port
        for name in done:
            out += self.complete(src, name, at)
        if live and not new and not done:
            out += self.fail(src, at)
        return out

    def _ignored(self, src: IPAddress, port: Port, at: float, last: float) -> bool:
        return at < last or (port == self.last_port[src] and at - last <= WINDOW)

    def complete(self, src: IPAddress, name: str, at: float) -> list[Seen]:
        last = self.quiet.get((src, name))
        if last is not None and self.clock - last < 1.0:
            return []
        self.quiet[src, name] = at
        self.grants[src, name] = at + OPEN_FOR
        return [("open", name, src, at, at + OPEN_FOR)]

    def fail(self, src: IPAddress, at: float, stamp: float | None = None) -> list[Seen]:
        if src in self.bans:
            return []
        times, last_stamp = self.failures.pop(src, ([], None))
        fresh = bool(times) and self.clock - max(times) <= RULES.window
        if stamp is not None and stamp == last_stamp and fresh:
            self.failures[src] = (times, last_stamp)
            return []
        recent = [t for t in times if self.clock - t <= RULES.window] + [at]
        if len(recent) >= RULES.max_failures:
            self.progress.pop(src, None)
            self.bans[src] = at + RULES.ban_for
            return [("ban", None, src, at, at + RULES.ban_for)]
        keep = recent[len(recent) - RULES.max_failures + 1 :]
        self.failures[src] = (keep, last_stamp if stamp is None else stamp)
        return []


def seen(decisions: list[Decision]) -> list[Seen]:
    return [(d.action.value, d.sequence, d.src, d.at, d.expires) for d in decisions]


def justified(history: list[Knock], steps: tuple[Port, ...]) -> bool:
    """Do knocks of `history`, in arrival order and ending with its last, spell
    `steps` with times that never go back and fit both timeouts?"""
    last = history[-1]

    def fits(knock: Knock, step: int, later: Knock) -> bool:
        in_time = knock.at <= later.at and later.at - knock.at <= STEP_TIMEOUT
        return in_time and last.at - knock.at <= SEQUENCE_TIMEOUT and port(knock) == steps[step]

    def back(before: int, step: int, later: Knock) -> bool:
        """Can steps[: step + 1] be found before index `before`, fitting before `later`?"""
        if step < 0:
            return True
        candidates = (j for j in range(before - 1, -1, -1) if fits(history[j], step, later))
        return any(back(j, step - 1, history[j]) for j in candidates)

    return port(last) == steps[-1] and back(len(history) - 1, len(steps) - 2, last)


def port(knock: Knock) -> Port:
    return (knock.dport, knock.proto)


class TrackerMachine(RuleBasedStateMachine):
    max_tracked = 1000
    compare = True

    def __init__(self) -> None:
        super().__init__()
        self.tracker = Tracker(make_config(self.max_tracked))
        self.model = Model()
        self.now = 0.0
        self.history: dict[IPAddress, list[Knock]] = {src: [] for src in SOURCES}
        self.open: set[tuple[IPAddress, str | None]] = set()
        self.banned: set[IPAddress] = set()

    @rule(src=st.sampled_from(SOURCES), port=st.sampled_from(PORTS), gap=st.sampled_from(GAPS))
    def knock(self, src: IPAddress, port: Port, gap: float) -> None:
        at = self.now + gap
        self.now = max(self.now, at)
        knock = Knock(src, DST, port[1], port[0], at)
        self.history[src].append(knock)
        decisions = self.tracker.feed(knock)
        self.check(decisions, self.model.feed(src, port, at))
        for d in decisions:
            if d.action is Action.OPEN:
                assert (d.src, d.at) == (src, at)
                assert justified(self.history[src], SEQUENCES[d.sequence or ""]), d

    @rule(gap=st.sampled_from([0.5, 1.0, 3.0, 10.0, 100.0]))
    def tick(self, gap: float) -> None:
        self.now += gap
        self.check(self.tracker.tick(self.now), self.model.tick(self.now))

    def check(self, decisions: list[Decision], expected: list[Seen], note: bool = True) -> None:
        assert [d.at for d in decisions] == sorted(d.at for d in decisions)
        if self.compare:
            assert sorted(seen(decisions), key=str) == sorted(expected, key=str)
        for d in decisions:
            self.follow(d, note)

    def follow(self, d: Decision, note: bool = True) -> None:
        """Opens and closes, bans and unbans, alternate per grant and per source."""
        if note:  # hypothesis 6.67 (Debian 12) refuses event() during teardown
            event(d.action.value)
        grant = (d.src, d.sequence)
        if d.action is Action.OPEN:
            self.open.add(grant)  # a refresh leaves it open
        elif d.action is Action.CLOSE:
            assert grant in self.open, d
            self.open.remove(grant)
        elif d.action is Action.BAN:
            assert d.src not in self.banned, d
            self.banned.add(d.src)
        else:
            assert d.src in self.banned, d
            self.banned.remove(d.src)

    @invariant()
    def bounded(self) -> None:
        assert self.tracker.tracked_count <= self.max_tracked

    def teardown(self) -> None:
        """Far in the future, everything is closed and every ban has ended, each once."""
        self.now += 1000.0
        self.check(self.tracker.tick(self.now), self.model.tick(self.now), note=False)
        assert not self.open and not self.banned
        assert self.tracker.grants == () and self.tracker.bans == ()


class Differential(TrackerMachine):
    pass


class Bounded(TrackerMachine):
    max_tracked = 4
    compare = False


TestDifferential = Differential.TestCase
TestDifferential.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestBounded = Bounded.TestCase
TestBounded.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)


# -- the first-step ring against a list of slots ------------------------------------

PLAN = Plan.of(Sequence("x", (Step(1, "udp"), Step(2, "udp")), (PortSpec(22, "tcp"),)))
START = Start.of([Route(PLAN, PLAN.spec.knock)])
KEYS = [*range(12), 2**32 - 1, 2**128 + 5, 2**128 + 6]


class RingMachine(RuleBasedStateMachine):
    """FirstStepRing (open addressing, backward-shift deletion) against a list."""

    def __init__(self) -> None:
        super().__init__()
        self.ring = FirstStepRing(5)
        self.slots: list[int | None] = []  # oldest first, emptied slots included
        self.at: dict[int, float] = {}
        self.time = 0.0

    @rule(key=st.sampled_from(KEYS))
    def put(self, key: int) -> None:
        if key in self.at:
            self.remove(key)
        if len(self.slots) == 5:
            self.forget(self.slots.pop(0))
        self.time += 1.0
        assert START is not None
        self.ring.put(key, START, self.time)
        self.slots.append(key)
        self.at[key] = self.time

    @rule(key=st.sampled_from(KEYS))
    def remove(self, key: int) -> None:
        self.ring.remove(key)
        if key in self.at:
            self.slots[self.slots.index(key)] = None
            del self.at[key]

    @rule(live_only=st.booleans())
    def pop_oldest(self, live_only: bool) -> None:
        self.ring.pop_oldest(live_only=live_only)
        while self.slots:
            key = self.forget(self.slots.pop(0))
            if key is not None or not live_only:
                break

    def forget(self, key: int | None) -> int | None:
        if key is not None:
            del self.at[key]
        return key

    @invariant()
    def same(self) -> None:
        for key in KEYS:
            found = self.ring.find(key)
            assert (found[1] if found else None) == self.at.get(key)
        assert len(self.ring) == len(self.slots)
        assert self.ring.weight == len(self.at)
        assert [key for key, _, _ in self.ring] == [k for k in self.slots if k is not None]


TestRing = RingMachine.TestCase
TestRing.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)
