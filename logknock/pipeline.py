"""The path a record takes after its source: matcher, knock, tracker.

`Pipeline.feed()` takes one `LogRecord` and returns the tracker's decisions.
It owns the counters that `logknock status` and `replay` report, and it is
where trust is judged: a line acts only when the kernel provably wrote it, or
when its source is trusted (a kernel-only file) and nothing proves otherwise.
The same object serves the daemon and `logknock replay`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .matcher import Matcher
from .models import Decision, Event, Knock, LogRecord, Match, Origin
from .tracker import Tracker

KNOCK_PROTOS = {"TCP": "tcp", "UDP": "udp"}


@dataclass
class Counters:
    lines: int = 0
    prefix_hits: int = 0
    parsed: int = 0
    knocks: int = 0
    untrusted: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)

    @property
    def drift(self) -> int:
        """Lines with our prefix that no pattern parses: the format may have drifted."""
        return self.rejections["no-pattern"] + self.rejections["truncated"]

    def as_json(self) -> dict[str, object]:
        return {
            "lines": self.lines,
            "prefix_hits": self.prefix_hits,
            "parsed": self.parsed,
            "knocks": self.knocks,
            "untrusted": self.untrusted,
            "decisions": dict(self.decisions),
            "rejections": dict(self.rejections),
            "drift": self.drift,
        }


def to_knock(event: Event, at: float) -> Knock | None:
    """An event is a knock when it is TCP or UDP with a destination port."""
    proto = KNOCK_PROTOS.get(event.proto)
    if proto is None or event.dpt is None or event.fragment:
        return None
    return Knock(event.src, event.dst, proto, event.dpt, at, event.tcp_flags)


class Pipeline:
    def __init__(self, matcher: Matcher, tracker: Tracker) -> None:
        self.matcher = matcher
        self.tracker = tracker
        self.counters = Counters()
        self.clock = 0.0  # the newest record time seen

    def feed(self, record: LogRecord) -> list[Decision]:
        self.counters.lines += 1
        if not self.matcher.prefilter(record.data):
            return []
        self.counters.prefix_hits += 1
        match = self.matcher.match(record.data, record.trusted, record.envelope)
        knock = self._knock(match, record)
        return self._count(self.tracker.feed(knock)) if knock else []

    def tick(self, now: float) -> list[Decision]:
        return self._count(self.tracker.tick(now))

    def _knock(self, match: Match, record: LogRecord) -> Knock | None:
        if match.event is None:
            self.counters.rejections[match.rejection.code if match.rejection else "?"] += 1
            return None
        self.counters.parsed += 1
        if not _trusted(match, record):
            self.counters.untrusted += 1
            return None
        at = _time_of(match, record, self.clock)
        self.clock = max(self.clock, at)
        knock = to_knock(match.event, at)
        self.counters.knocks += knock is not None
        return knock

    def _count(self, decisions: list[Decision]) -> list[Decision]:
        for decision in decisions:
            self.counters.decisions[decision.action.value] += 1
        return decisions


def _trusted(match: Match, record: LogRecord) -> bool:
    origin = match.envelope.origin if match.envelope else Origin.UNKNOWN
    return origin is Origin.KERNEL or (origin is Origin.UNKNOWN and record.trusted)


def _time_of(match: Match, record: LogRecord, clock: float) -> float:
    if record.at is not None:
        return record.at
    if match.envelope and match.envelope.at is not None:
        return match.envelope.at
    return clock
