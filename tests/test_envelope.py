"""The envelope parser against fixture lines, plus properties it keeps on any text.

Fixtures live in tests/fixtures/envelopes/*.txt. Each case is two lines: an
expectation, then the raw line exactly as a log holds it (trailing spaces too):

    #> {"format": "syslog", "origin": "unknown", "at": 1795237457.0, "message": "..."}
    Nov 21 05:04:17 host kernel: [ 83.325088] logknock: IN=eth0 ...
    #> reject: kmsg-continuation
     SUBSYSTEM=net

An expectation names only the fields that matter: format, origin, at (null: no
time), clock, message, and "auto" when auto mode rightly finds another format
(a dmesg -t line is "raw" to it). Directives set the following cases:
`# kind: kmsg` (default auto), `# year: 2026` (or none), `# tz: EST5` (default
UTC), `# trusted: yes|no`. Any other `#` line is a comment.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logknock import envelope
from logknock.envelope import ENVELOPES, parse
from logknock.envelopes import journal, stamps
from logknock.models import Clock, Envelope, Origin, Rejection

FIXTURES = Path(__file__).parent / "fixtures" / "envelopes"
FIELDS = {"format", "origin", "at", "clock", "message", "auto"}
DIRECTIVES = {"kind", "year", "tz", "trusted"}
CODES = {"no-envelope", "kmsg-continuation", "indented", "bad-json", "bad-time", "no-message"}
FORMATS = {"kmsg", "dmesg", "journal-json", "journal-message", "syslog", "ulogd", "raw"}


@dataclass(frozen=True)
class Case:
    where: str  # file:line of the raw line
    line: str
    kind: str = "auto"
    year: int | None = None
    tz: str = "UTC"
    trusted: bool = False
    expect: dict[str, Any] = field(default_factory=dict)
    reject: str | None = None

    def parse(self, kind: str | None = None) -> Envelope | Rejection:
        return parse(self.line, kind or self.kind, trusted=self.trusted, year=self.year)


def _setting(key: str, value: str) -> object:
    if key == "year":
        return None if value == "none" else int(value)
    if key == "trusted":
        return {"yes": True, "no": False}[value]
    return value


def _expectation(text: str, where: str) -> dict[str, Any]:
    if text.startswith("reject: "):
        return {"reject": text.removeprefix("reject: ")}
    expect = json.loads(text)
    unknown = set(expect) - FIELDS
    assert not unknown, f"{where}: unknown expectation fields {sorted(unknown)}"
    return {"expect": expect}


def read_cases(path: Path) -> Iterator[Case]:
    lines = path.read_bytes().decode("utf-8").split("\n")
    settings_: dict[str, object] = {}
    number = 0
    while number < len(lines):
        text = lines[number]
        number += 1
        key, _, value = text.removeprefix("# ").partition(": ")
        if text.startswith("# ") and key in DIRECTIVES:
            settings_[key] = _setting(key, value)
        elif text.startswith("#> "):
            where = f"{path.name}:{number + 1}"
            assert number < len(lines) - 1, f"{where}: expectation without a line"
            expected = _expectation(text.removeprefix("#> "), where)
            yield Case(where, lines[number], **settings_, **expected)
            number += 1


CASES = [case for path in sorted(FIXTURES.glob("*.txt")) for case in read_cases(path)]


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


def _check(result: Envelope | Rejection, case: Case) -> None:
    if case.reject:
        assert isinstance(result, Rejection), f"{case.where}: expected a rejection, got {result}"
        assert result.code == case.reject, f"{case.where}: {result}"
        return
    assert isinstance(result, Envelope), f"{case.where}: {result}"
    expect = case.expect
    for name in ("format", "message"):
        if name in expect:
            assert getattr(result, name) == expect[name], f"{case.where}: {name}"
    if "origin" in expect:
        assert result.origin is Origin(expect["origin"]), f"{case.where}: {result.note}"
    if "clock" in expect:
        assert result.clock is Clock(expect["clock"]), case.where
    if "at" in expect:
        wanted = expect["at"]
        assert result.at == (None if wanted is None else pytest.approx(wanted, abs=1e-6))


@pytest.mark.parametrize("case", CASES, ids=[case.where for case in CASES])
def test_fixture(case: Case, zone: Any) -> None:
    zone(case.tz)
    _check(case.parse(), case)


EXPLICIT = [c for c in CASES if c.kind != "auto" and "format" in c.expect]


@pytest.mark.parametrize("case", EXPLICIT, ids=[case.where for case in EXPLICIT])
def test_auto_agrees_with_explicit_kind(case: Case, zone: Any) -> None:
    zone(case.tz)
    explicit, auto = case.parse(), case.parse("auto")
    assert isinstance(auto, Envelope), f"{case.where}: {auto}"
    wanted = case.expect.get("auto", case.expect["format"])
    assert auto.format == wanted
    if wanted == case.expect["format"]:
        assert auto == explicit


def test_fixtures_cover_every_format_kind_and_code() -> None:
    assert {c.expect["format"] for c in CASES if "format" in c.expect} == FORMATS
    assert {c.kind for c in CASES} == set(ENVELOPES)
    assert {c.reject for c in CASES if c.reject} == CODES
    assert envelope.__doc__ is not None
    for code in CODES:
        assert f"    {code} " in envelope.__doc__, f"{code} is not documented"


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown envelope kind 'kmesg'"):
        parse("4,1,2,-;x", "kmesg")


# Strings that start the way real headers do, so random tails reach the deep branches.
HEADS = [
    "4,1234,83325088,-;",
    "6,339,5140900,-,caller=T1;",
    "[   83.325088] ",
    "[  +0.000010] ",
    "[<    0.000010>] ",
    "[Sat Nov 21 05:04:17 2026] ",
    "[Nov21 05:04] ",
    "kern  :warn  : ",
    "<4>",
    "<12>[  1.5] ",
    "2026-11-21T05:04:17,325088+00:00 ",
    "2026-11-21T05:04:17.123456+00:00 host ",
    "Nov 21 05:04:17 host ",
    "Nov  1 05:04:17.123456 host kern.warn ",
    "Sat Nov 21 05:04:17 2026 ",
    "Sat 2026-11-21 05:04:17 UTC host ",
    "1795237459.920000 host ",
    "<4>1 2026-11-21T05:04:17Z host kernel - - ",
    '<4>1 - host kernel 1 - [a@1 b="',
    '{"MESSAGE": ',
    " ",
    "",
]


@settings(max_examples=400)
@given(
    head=st.sampled_from(HEADS),
    tail=st.text(),
    kind=st.sampled_from(ENVELOPES),
    trusted=st.booleans(),
    year=st.none() | st.integers(min_value=-5, max_value=20000),
)
def test_parse_never_raises(
    head: str, tail: str, kind: str, trusted: bool, year: int | None
) -> None:
    result = parse(head + tail, kind, trusted=trusted, year=year)
    assert isinstance(result, Envelope | Rejection)
    if isinstance(result, Envelope):
        assert result.message, "an envelope always holds a message"


@given(line=st.text(), kind=st.sampled_from(ENVELOPES))
def test_envelope_takes_its_message_from_the_line(line: str, kind: str) -> None:
    result = parse(line, kind)
    assert isinstance(result, Envelope | Rejection)
    if isinstance(result, Envelope) and result.format not in ("journal-json", "ulogd"):
        assert result.message in line


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@given(
    fields=st.dictionaries(
        st.sampled_from(["MESSAGE", "_TRANSPORT", "SYSLOG_FACILITY", "__REALTIME_TIMESTAMP"]),
        JSON | st.lists(st.integers(min_value=-1, max_value=300)),
    )
)
def test_any_journal_object_parses_or_is_rejected(fields: dict[str, Any]) -> None:
    result = parse(json.dumps(fields), "journal-json")
    if isinstance(result, Rejection):
        assert result.code in {"bad-json", "no-message"}
    elif result.origin is Origin.KERNEL:
        assert fields["_TRANSPORT"] == "kernel"
        assert fields.get("SYSLOG_FACILITY", "0") == "0"


NOW = 1795237457.0  # Sat 2026-11-21 05:04:17 UTC


@pytest.mark.parametrize(
    ("month", "day", "clock", "now", "year"),
    [
        ("Nov", 21, "05:04:17", NOW, 2026),
        ("Nov", 22, "05:04:16", NOW, 2026),  # less than a day ahead: clock skew
        ("Nov", 22, "05:04:18", NOW, 2025),  # more than a day ahead: last year
        ("Dec", 31, "23:59:59", 1798761630.0, 2026),  # read at 2027-01-01 00:00:30
        ("Jan", 1, "00:00:10", 1798761630.0, 2027),
        ("Feb", 29, "12:00:00", 1863129600.0, 2028),  # read in January 2029
        ("Feb", 29, "12:00:00", 1835481600.0, 2028),  # read in March 2028
        ("Feb", 29, "12:00:00", 1803859200.0, None),  # March 2027: neither 2027 nor 2026
        ("Feb", 29, "12:00:00", 1830297600.0, None),  # January 2028: ahead, and 2027 has none
    ],
)
def test_year_is_guessed_from_now(
    month: str, day: int, clock: str, now: float, year: int | None, zone: Any
) -> None:
    zone("UTC")
    if year is None:
        with pytest.raises(stamps.BadTime):
            stamps.yearless(month, day, clock, None, None, now=now)
    else:
        got = time.gmtime(stamps.yearless(month, day, clock, "25", None, now=now))
        assert (got.tm_year, got.tm_mon, got.tm_mday) == (year, stamps.MONTHS[month], day)


def test_year_given_wins_over_now(zone: Any) -> None:
    zone("UTC")
    assert stamps.yearless("Nov", 22, "05:04:18", None, 2030, now=NOW) == 1921554258.0


def test_local_time_follows_tzset(zone: Any) -> None:
    line = "Nov 21 05:04:17 gw kernel: logknock: IN=eth0 OUT= "
    at = {}
    for name in ("UTC", "EST5", "UTC"):
        zone(name)
        result = parse(line, year=2026)
        assert isinstance(result, Envelope)
        at[name] = result.at
    assert at == {"UTC": 1795237457.0, "EST5": 1795237457.0 + 5 * 3600}


@given(st.text(alphabet='{}[]":,0123456789 \t\nabe\\.-ulnrtf\ufeff', max_size=40))
def test_journal_json_reads_as_json_loads(text: str) -> None:
    try:
        expected: object = json.loads(text)
    except (ValueError, RecursionError):
        expected = ValueError
    try:
        got: object = journal._loads(text)
    except (ValueError, RecursionError):
        got = ValueError
    assert got == expected
