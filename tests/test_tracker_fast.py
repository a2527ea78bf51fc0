"""The tracker's lanes against its general path, driven by hypothesis.

`Tracker.feed` sends the common knocks down lanes that skip building views
of progress (tracker.py); `General` is the same tracker with every knock sent
through `_knock`, the general path, as before the lanes existed. Both run the
same random configuration and the same calls, and must agree on everything
the tracker shows: each call's decisions, `tracked_count`, `revision` and
the snapshot.

Configurations mix plain sequences (the lanes' case) with one-step, flagged,
one-time, toggling and closing ones, sequences sharing their first steps,
and a tiny `max_tracked` now and then, so both paths and the hand-over
between them are exercised. Knocks mostly walk a source through a sequence
(so sequences advance and complete), with repeats, noise and pauses.
"""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logknock.models import Decision, Knock
from logknock.schema import Bruteforce, Config, Limits, PortSpec, Sequence, Step
from logknock.tracker import Tracker
from logknock.tracker_table import source_key

PORTS = [(1, "udp"), (2, "udp"), (3, "tcp"), (4, "tcp"), (5, "udp"), (6, "tcp")]
SOURCES = [ipaddress.ip_address(a) for a in ("198.18.0.1", "198.18.0.2", "2001:db8::3")]
DST = ipaddress.ip_address("198.18.1.1")
GAPS = [0.0, 0.0, 0.1, 0.5, 0.5, 1.0, 1.0, 2.0, 3.0, 6.0, -0.5, -3.0]
SYN, ACK = frozenset({"SYN"}), frozenset({"ACK"})
BASE = Sequence("base", open=(PortSpec(22, "tcp"),))
Call = tuple[str, int, int, frozenset[str], float]

# Timings a random script rarely hits: each line "SOURCE PORT/PROTO[:FLAGS] @TIME".
EDGES = {
    "a duplicate exactly at the window's end, after step two": (
        ["a 1/udp 2/udp 3/udp"],
        "A 1/udp @0; A 2/udp @0.5; A 2/udp @1.5; A 3/udp @2",
    ),
    "a second step after its first step's wait, the ring not swept yet": (
        ["a 1/udp 2/udp step=5", "b 3/tcp 4/tcp step=1"],
        "A 1/udp @0; B 3/tcp @0.1; B 4/tcp @1.5; A 2/udp @2",
    ),
    "the sequence timeout ends the progress before the step timeout": (
        ["a 1/udp 2/udp 3/udp step=5 sequence=6"],
        "A 1/udp @0; A 2/udp @4; A 3/udp @6.5",
    ),
    "two sequences with one beginning, then the second's last step": (
        ["a 1/udp 2/udp 3/udp", "b 1/udp 2/udp 4/tcp"],
        "A 1/udp @0; A 2/udp @1; A 4/tcp @2; A 3/udp @3",
    ),
    "a flagged step knocked with the wrong flags": (
        ["a 1/udp 3/tcp:syn,!ack 2/udp"],
        "A 1/udp @0; A 3/tcp:ack @1; A 2/udp @2; A 1/udp @3; A 3/tcp:syn @4; A 2/udp @5",
    ),
}


class General(Tracker):
    """The tracker with its lanes bypassed: every knock takes the general path."""

    def feed(self, knock: Knock) -> list[Decision]:
        out = self._advance(knock.at)
        key = source_key(knock.src)
        if key not in self._guard.banned_keys:
            out += self._knock(key, knock)
        return sorted(out, key=lambda d: d.at)


@st.composite
def steps(draw: st.DrawFn, size: st.SearchStrategy[int]) -> tuple[Step, ...]:
    chosen = []
    for _ in range(draw(size)):
        port, proto = PORTS[draw(st.integers(0, len(PORTS) - 1))]
        flagged = proto == "tcp" and draw(st.booleans())
        chosen.append(Step(port, proto, SYN, ACK) if flagged else Step(port, proto))
    return tuple(chosen)


@st.composite
def sequences(draw: st.DrawFn, name: str) -> Sequence:
    spec = dataclasses.replace(
        BASE,
        name=name,
        open_for=draw(st.sampled_from([2.0, 5.0, 30.0])),
        step_timeout=draw(st.sampled_from([1.0, 3.0, 5.0])),
        sequence_timeout=draw(st.sampled_from([2.0, 7.0, 15.0])),
    )
    kind = draw(st.sampled_from(["plain"] * 4 + ["one-step", "one-time", "toggle"]))
    if kind == "one-time":
        lines = draw(st.lists(steps(st.integers(1, 3)), min_size=1, max_size=3))
        return dataclasses.replace(spec, one_time_file="lines", one_time=tuple(lines))
    size = st.just(1) if kind == "one-step" else st.integers(2, 4)
    return dataclasses.replace(spec, knock=draw(steps(size)), toggle=kind == "toggle")


@st.composite
def configs(draw: st.DrawFn) -> Config:
    chosen = [draw(sequences(f"s{i}")) for i in range(draw(st.integers(1, 3)))]
    if len(chosen) > 1 and chosen[0].knock and chosen[1].knock and draw(st.booleans()):
        shared = chosen[0].knock[:2] + chosen[1].knock[2:]  # two sequences, one beginning
        chosen[1] = dataclasses.replace(chosen[1], knock=shared)
    if len(chosen) > 1 and draw(st.booleans()):
        chosen[-1] = dataclasses.replace(chosen[-1], closes="s0", toggle=False)
    rules = Bruteforce(
        max_failures=draw(st.sampled_from([1, 2, 3])),
        window=draw(st.sampled_from([2.0, 30.0])),
        ban_for=draw(st.sampled_from([5.0, 50.0])),
    )
    return Config(
        sequences=tuple(chosen),
        duplicate_window=draw(st.sampled_from([0.0, 1.0])),
        bruteforce=rules,
        limits=Limits(draw(st.sampled_from([2, 3, 1000, 1000]))),
    )


calls = st.lists(
    st.tuples(
        st.sampled_from(["next"] * 8 + ["again", "noise", "noise", "tick"]),
        st.integers(0, len(SOURCES) - 1),
        st.integers(0, 2),  # the sequence a "next" walks
        st.sampled_from([frozenset(), SYN, SYN, ACK]),
        st.sampled_from(GAPS),
    ),
    max_size=80,
)


class Script:
    """Turns calls into knocks: "next" walks a source through a sequence's steps,
    "again" repeats the step it sent last, "noise" knocks on any port."""

    def __init__(self, config: Config) -> None:
        self.config, self.now = config, 1000.0
        self.cursors: dict[tuple[int, int], int] = {}

    def knock(self, call: Call) -> Knock:
        kind, source, sequence, flags, gap = call
        if kind == "noise":
            number, proto = PORTS[(source + sequence + int(gap * 2)) % len(PORTS)]
        else:
            spec = self.config.sequences[sequence % len(self.config.sequences)]
            route = spec.knock or spec.one_time[0]
            cursor = self.cursors.get((source, sequence), 0) - (kind == "again")
            self.cursors[source, sequence] = cursor + 1
            step = route[max(cursor, 0) % len(route)]
            number, proto = step.port, step.proto
        at = self.now + gap
        self.now = max(self.now, at)
        found = flags if proto == "tcp" else frozenset()
        return Knock(SOURCES[source], DST, proto, number, at, found)


def sequence(text: str) -> Sequence:
    """ "a 1/udp 3/tcp:syn,!ack step=5 sequence=6" -> a sequence."""
    name, *words = text.split()
    knock, timing = [], {"step_timeout": 3.0, "sequence_timeout": 15.0}
    for word in words:
        if "=" in word:
            field, value = word.split("=")
            timing[f"{field}_timeout"] = float(value)
            continue
        port, _, rest = word.partition("/")
        proto, _, flags = rest.partition(":")
        must = frozenset(f.upper() for f in flags.split(",") if f and f[0] != "!")
        never = frozenset(f[1:].upper() for f in flags.split(",") if f[:1] == "!")
        knock.append(Step(int(port), proto, must, never))
    spec = dataclasses.replace(BASE, name=name, knock=tuple(knock))
    return dataclasses.replace(spec, **timing)  # type: ignore[arg-type]


def knocks(script: str) -> list[Knock]:
    """ "A 3/tcp:syn @4; ..." -> knocks from sources A, B, C."""
    found = []
    for line in script.split(";"):
        who, port, at = line.split()
        number, _, rest = port.partition("/")
        proto, _, flags = rest.partition(":")
        seen = frozenset(f.upper() for f in flags.split(",") if f)
        source = SOURCES["ABC".index(who)]
        found.append(Knock(source, DST, proto, int(number), float(at[1:]), seen))
    return found


def shown(tracker: Tracker, decisions: list[Decision]) -> tuple[object, ...]:
    return (decisions, tracker.tracked_count, tracker.revision, tracker.snapshot())


@settings(max_examples=500, deadline=None)
@given(config=configs(), script=calls)
def test_lanes_decide_as_the_general_path(config: Config, script: list[Call]) -> None:
    fast, general = Tracker(config), General(config)
    play = Script(config)
    for call in script:
        if call[0] == "tick":
            play.now += abs(call[4]) * 10
            assert shown(fast, fast.tick(play.now)) == shown(general, general.tick(play.now))
            continue
        knock = play.knock(call)
        assert shown(fast, fast.feed(knock)) == shown(general, general.feed(knock)), knock
    play.now += 1000.0
    assert shown(fast, fast.tick(play.now)) == shown(general, general.tick(play.now))


@pytest.mark.parametrize("case", EDGES)
def test_lanes_decide_as_the_general_path_at_the_edges(case: str) -> None:
    texts, script = EDGES[case]
    config = Config(sequences=tuple(sequence(text) for text in texts))
    fast, general = Tracker(config), General(config)
    for knock in knocks(script):
        assert shown(fast, fast.feed(knock)) == shown(general, general.feed(knock)), knock
    assert shown(fast, fast.tick(100.0)) == shown(general, general.tick(100.0))
