"""Pattern fixtures: sample lines with the expected result beside each one.

A fixture file (`tests/fixtures/<pack>/*.txt`) is a list of cases. Each case
is an expectation line starting with `#>`, then the raw line it is about:

    #> {"src": "198.51.100.7", "dpt": 7000, "proto": "UDP", "origin": "kernel"}
    4,1234,83325088,-;logknock: IN=eth0 OUT= MAC= SRC=198.51.100.7 ...
    #> no event: repeated-key
    logknock: IN=eth0 OUT= ... SRC=198.51.100.7 ... SRC=203.0.113.9
    #>x no event: control-char
    logknock: IN=eth0\\x00 OUT= ...     (written with \\xNN escapes: `#>x`)

The JSON object lists the event fields the case asserts (any of `prefix in out
src dst proto spt dpt family flags fragment`, plus `origin` and `pattern`).
Directive lines `# envelope: kmsg`, `# prefix: "[UFW BLOCK] "` (a JSON string,
or `any`) and `# trusted: true` apply to the cases after them. Other `#` lines
and blank lines are comments. Adding a case adds two lines, never code.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .matcher import DEFAULT_PREFIX, Matcher
from .models import Match
from .packs import Pack

EVENT_KEYS = frozenset(
    {"prefix", "in", "out", "src", "dst", "proto", "spt", "dpt", "family", "flags", "fragment"}
)
CASE_KEYS = EVENT_KEYS | {"origin", "pattern"}


@dataclass(frozen=True, slots=True)
class Settings:
    envelope: str = "auto"
    prefix: str | None = DEFAULT_PREFIX
    trusted: bool = False


@dataclass(frozen=True, slots=True)
class Case:
    path: Path
    line: int  # the line number of the raw line, from 1
    raw: bytes
    settings: Settings
    expect: dict[str, Any] | None = None  # None: no event expected
    reason: str | None = None  # the rejection code expected when there is no event
    problems: tuple[str, ...] = field(default=())  # errors in the fixture itself

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def read_cases(path: Path) -> Iterator[Case]:
    settings, pending = Settings(), None
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if pending is not None:
            yield _finish(pending, raw, path, number, settings)
            pending = None
        elif raw.startswith(b"#>"):
            pending = raw
        elif raw.startswith(b"#"):
            settings = _directive(raw[1:].decode("utf-8", "replace").strip(), settings)
    if pending is not None:
        yield Case(path, number, b"", settings, problems=("expectation without a line",))


def _directive(text: str, settings: Settings) -> Settings:
    key, sep, value = text.partition(": ")
    if not sep:
        return settings
    if key == "envelope":
        return replace(settings, envelope=value.strip())
    if key == "prefix":
        return replace(settings, prefix=None if value.strip() == "any" else json.loads(value))
    if key == "trusted":
        return replace(settings, trusted=value.strip() == "true")
    return settings


def _finish(header: bytes, raw: bytes, path: Path, number: int, settings: Settings) -> Case:
    escaped = header.startswith(b"#>x")
    text = header[3 if escaped else 2 :].decode("utf-8").strip()
    if escaped:
        raw = raw.decode("ascii").encode("latin-1").decode("unicode_escape").encode("latin-1")
    case = Case(path, number, raw, settings)
    if text.startswith("no event"):
        return replace(case, reason=text.partition(":")[2].strip() or None)
    try:
        expect = json.loads(text)
    except json.JSONDecodeError as exc:
        return replace(case, problems=(f"bad expectation: {exc}",))
    unknown = set(expect) - CASE_KEYS if isinstance(expect, dict) else {"(not an object)"}
    problems = tuple(f"unknown expectation key {k!r}" for k in sorted(unknown))
    return replace(case, expect=expect, problems=problems)


def check(case: Case, match: Match) -> list[str]:
    """What is wrong with `match` for `case`; empty when it passes."""
    if case.problems:
        return list(case.problems)
    if case.expect is None:
        return _check_no_event(case, match)
    if match.event is None:
        return [f"expected an event, got no event: {match.rejection}"]
    actual = dict(match.event.as_json(), flags=sorted(match.event.tcp_flags))
    actual.update(fragment=match.event.fragment, pattern=match.pattern)
    actual["origin"] = match.envelope.origin.value if match.envelope else None
    return [
        f"{key}: expected {value!r}, got {actual.get(key)!r}"
        for key, value in case.expect.items()
        if _normal(key, value) != _normal(key, actual.get(key))
    ]


def _check_no_event(case: Case, match: Match) -> list[str]:
    if match.event is not None:
        return [f"expected no event ({case.reason}), got {match.event.as_json()}"]
    code = match.rejection.code if match.rejection else None
    if case.reason and code != case.reason:
        return [f"expected reason {case.reason!r}, got {match.rejection}"]
    return []


def _normal(key: str, value: Any) -> Any:
    if key in ("src", "dst") and isinstance(value, str):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return value
    return sorted(value) if key == "flags" and isinstance(value, list) else value


class CaseRunner:
    """Runs cases against one pack, keeping one matcher per setting."""

    def __init__(self, pack: Pack) -> None:
        self.pack = pack
        self._matchers: dict[tuple[str | None, str], Matcher] = {}
        self.hits: dict[str, int] = {p.id: 0 for p in pack.patterns}

    def run(self, case: Case) -> tuple[Match, list[str]]:
        key = (case.settings.prefix, case.settings.envelope)
        if key not in self._matchers:
            self._matchers[key] = Matcher(self.pack, key[0], key[1])
        match = self._matchers[key].match(case.raw, trusted=case.settings.trusted)
        if match.pattern:
            self.hits[match.pattern] += 1
        return match, check(case, match)


def fixture_files(root: Path, pack: Pack) -> list[Path]:
    return sorted((root / pack.name).glob("*.txt"))
