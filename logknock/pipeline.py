"""The path a record takes after its source: matcher, knock, tracker.

`Pipeline.feed()` takes one `LogRecord` and returns the tracker's decisions.
It owns the counters that `logknock status` and `replay` report (per source),
and it is where trust is judged: trust comes from the source, and the
envelope can only take it away. The same object serves the daemon and
`logknock replay`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, overload

from . import envelope as envelopes
from .fastlane import FastLane, Reading
from .matcher import Matcher
from .models import Decision, Digested, Envelope, Knock, LogRecord, Match, Origin, Rejection
from .tracker import Tracker

DRIFT_CODES = frozenset({"no-pattern", "truncated"})
SYSLOG_KINDS = frozenset({"auto", "syslog"})  # envelopes whose lines the fast lane reads whole
ORIGINS = {origin.value: origin for origin in Origin}  # a digest's kind -> its origin
KINDS = {origin: origin.value for origin in Origin}  # (an enum's .value costs a descriptor call)
REJECTED = "rejected"  # a digest's kind for a line the matcher rejected


@dataclass
class Counters:
    lines: int = 0
    prefix_hits: int = 0
    parsed: int = 0
    knocks: int = 0
    untrusted: int = 0  # parsed, but the source or envelope cannot vouch for the kernel
    too_old: int = 0  # older than the longest sequence window when read
    rejections: Counter[str] = field(default_factory=Counter)

    @property
    def drift(self) -> int:
        """Lines with our prefix that no pattern parses: the format may have drifted."""
        return sum(self.rejections[code] for code in DRIFT_CODES)

    def add(self, other: Counters) -> None:
        for f in fields(self):
            if f.name == "rejections":
                self.rejections.update(other.rejections)
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_json(self) -> dict[str, object]:
        data: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["rejections"] = dict(self.rejections)
        data["drift"] = self.drift
        return data


class Pipeline:
    """Matcher and tracker joined, with the counters and the trust rule.

    `max_age`: records older than this many seconds (by the wall clock when
    read) are counted and skipped, so a restart never acts on old knocks.
    `require_proof`: act only on lines whose envelope proves the kernel.
    `fast`: read the common lines through the fast lane (`logknock.fastlane`);
    the answers are the same, only slower without it.
    """

    def __init__(
        self,
        matcher: Matcher,
        tracker: Tracker,
        *,
        require_proof: bool = False,
        max_age: float | None = None,
        on_drift: Callable[[LogRecord, Rejection], None] | None = None,
        wallclock: Callable[[], float] = time.time,
        fast: bool = True,
    ) -> None:
        self.matcher, self.tracker = matcher, tracker
        self.require_proof, self.max_age = require_proof, max_age
        self.on_drift, self.wallclock = on_drift, wallclock
        self.by_source: dict[str, Counters] = {}
        self.decisions: Counter[str] = Counter()
        self.clock = 0.0  # the newest record time seen
        self.lane = FastLane.for_matcher(matcher) if fast else None

    def feed(self, record: LogRecord) -> list[Decision]:
        counters = self.by_source.get(record.source) or self._new_counters(record.source)
        counters.lines += 1
        if not self.matcher.prefilter(record.data):
            return []
        counters.prefix_hits += 1
        fast = self._fast(record, self.clock)
        if fast is not None:
            knock = self._admit(fast[0], fast[1], record.trusted, counters)
        else:
            match = self.matcher.match(record.data, record.trusted, record.envelope)
            knock = self._knock(match, record, counters)
        return self._count(self.tracker.feed(knock)) if knock else []

    def digest(self, record: LogRecord) -> tuple[Any, ...] | None:
        """What this pipeline reads in a record, as plain data for `feed_digested` in
        another process (replay's scanning children); None: send the record itself.

        `(origin, reading)` for a fast-lane knock whose time the record itself
        holds (the newest time seen lives in the other process); `(REJECTED,
        code)` for a line the matcher rejects, unless `on_drift` wants the record."""
        if not self.matcher.prefilter(record.data):
            return None
        fast = self._fast(record, None)
        return self._rejection(record) if fast is None else (KINDS[fast[0]], fast[2])

    def digester(self, source: str, trusted: bool) -> Callable[[bytes], tuple[Any, ...] | None]:
        """`digest` for the lines of one replayed file (records as `logknock.sources.
        replay` makes them), made once: a line the fast lane reads skips the record
        and the layers between; any other line goes on to the matcher, as in `digest`,
        without a second look by the lane."""
        lane = self.lane
        if lane is None:
            return lambda line: self.digest(LogRecord(source, line, None, None, trusted))
        read, knock, prefilter = self._read_text, lane.knock, self.matcher.prefilter

        def digest_line(line: bytes) -> tuple[Any, ...] | None:
            if line.isascii():
                found = read(line.decode("ascii"), "auto", trusted, None, None)
                if found is not None and knock(found[1]) is not None:
                    return KINDS[found[0]], found[1]
            if not prefilter(line):  # the lane has had its look: on to the matcher's
                return None
            return self._rejection(LogRecord(source, line, None, None, trusted))

        return digest_line

    def _rejection(self, record: LogRecord) -> tuple[str, str] | None:
        """`digest` of a record the fast lane does not take: the code of the matcher's
        rejection, or None where the record must go itself (an event, or drift that
        `on_drift` wants to see)."""
        match = self.matcher.match(record.data, record.trusted, record.envelope)
        code = match.rejection.code if match.rejection else "unknown"
        if match.event is None and not (self.on_drift and code in DRIFT_CODES):
            return REJECTED, code
        return None

    def feed_digested(self, item: Digested) -> list[Decision]:
        """`feed` for records that `digest` read in another process."""
        counters = self.by_source.get(item.source) or self._new_counters(item.source)
        counters.lines += len(item.digests)
        counters.prefix_hits += len(item.digests)
        out: list[Decision] = []
        for kind, value in item.digests:
            if kind == REJECTED:
                counters.rejections[value] += 1
                continue
            knock = self.lane.knock(value) if self.lane else None
            knock = self._admit(ORIGINS[kind], knock, item.trusted, counters)
            if knock:
                out += self.tracker.feed(knock)
        return self._count(out)

    def count_lines(self, source: str, n: int) -> None:
        """Lines a source read and left out itself: they hold no trace of our prefix."""
        counters = self.by_source.get(source) or self._new_counters(source)
        counters.lines += n

    def tick(self, now: float) -> list[Decision]:
        if self.lane:
            self.lane.forget()
        return self._count(self.tracker.tick(now))

    def total(self) -> Counters:
        total = Counters()
        for counters in self.by_source.values():
            total.add(counters)
        return total

    def _new_counters(self, source: str) -> Counters:
        self.by_source[source] = counters = Counters()
        return counters

    def _knock(self, match: Match, record: LogRecord, counters: Counters) -> Knock | None:
        if match.event is None:
            self._rejected(match, record, counters)
            return None
        origin = match.envelope.origin if match.envelope else Origin.UNKNOWN
        at = _time_of(record.at, match.envelope, self.clock)
        return self._admit(origin, Knock.of_event(match.event, at), record.trusted, counters)

    def _admit(
        self, origin: Origin, knock: Knock | None, trusted: bool, counters: Counters
    ) -> Knock | None:
        """A parsed line's knock, if its origin is trusted and it is recent enough."""
        counters.parsed += 1
        if not _trusted(origin, trusted, self.require_proof):
            counters.untrusted += 1
            return None
        if knock is None:
            return None
        if self.max_age is not None and self.wallclock() - knock.at > self.max_age:
            counters.too_old += 1
            return None
        if knock.at > self.clock:  # noqa: PLR1730 - max() costs a call, on every knock
            self.clock = knock.at
        counters.knocks += 1
        return knock

    def _fast(self, record: LogRecord, clock: float | None) -> tuple[Origin, Knock, Reading] | None:
        """The fast lane's knock for a record, the origin its envelope proves and the
        reading it came from; None: ask the matcher. `clock`: the time for a record
        that holds none (None: give up on such a record)."""
        lane = self.lane
        found = self._reading(record, clock) if lane else None
        if lane is None or found is None:
            return None
        knock = lane.knock(found[1])
        return None if knock is None else (found[0], knock, found[1])

    def _reading(self, record: LogRecord, clock: float | None) -> tuple[Origin, Reading] | None:
        if not record.data.isascii():
            return None
        text = record.data.decode("ascii")
        return self._read_text(text, record.envelope, record.trusted, record.at, clock)

    def _read_text(
        self, text: str, envelope: str, trusted: bool, at: float | None, clock: float | None
    ) -> tuple[Origin, Reading] | None:
        """`_reading` of a record's fields: its text, envelope kind, trust and time."""
        assert self.lane is not None
        if envelope in SYSLOG_KINDS and text[:1] != "{":
            reading = self.lane.read_line(text, at)
            return (Origin.UNKNOWN, reading) if reading else None
        env = envelopes.parse(text, envelope, trusted=trusted)
        if isinstance(env, Rejection) or env.origin is Origin.NOT_KERNEL:
            return None
        when = _time_of(at, env, clock)
        reading = None if when is None else self.lane.read_message(env.message, when)
        return (env.origin, reading) if reading else None

    def _rejected(self, match: Match, record: LogRecord, counters: Counters) -> None:
        rejection = match.rejection or Rejection("unknown")
        counters.rejections[rejection.code] += 1
        if rejection.code in DRIFT_CODES and self.on_drift:
            self.on_drift(record, rejection)

    def _count(self, decisions: list[Decision]) -> list[Decision]:
        for decision in decisions:
            self.decisions[decision.action.value] += 1
        return decisions


def _trusted(origin: Origin, trusted: bool, require_proof: bool) -> bool:
    """Trust comes from the source; the envelope can only take it away.

    A record from an untrusted source never acts, whatever its text claims (a
    text file can hold a line shaped like a kmsg record). From a trusted
    source, a line acts unless its envelope proves another writer, or, with
    `require_proof`, unless it fails to prove the kernel.
    """
    if not trusted or origin is Origin.NOT_KERNEL:
        return False
    return origin is Origin.KERNEL or not require_proof


@overload
def _time_of(at: float | None, envelope: Envelope | None, clock: float) -> float: ...
@overload
def _time_of(at: float | None, envelope: Envelope | None, clock: float | None) -> float | None: ...
def _time_of(at: float | None, envelope: Envelope | None, clock: float | None) -> float | None:
    """A record's time: its source's (`at`), else its envelope's, else the newest seen."""
    if at is not None:
        return at
    if envelope is not None and envelope.at is not None:
        return envelope.at
    return clock
