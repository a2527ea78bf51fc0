"""Reading a knockd.conf (knockd 0.8) the way knockd reads it.

    read_knockd(text, path) -> Knockd      raises ConfigError naming file:line

knockd's rules, followed here: each line is trimmed; empty lines and lines
starting with `#` are skipped (a `#` after a value is part of the value);
`[name]` starts a section and `[options]` holds the global options; every
other line is `KEY = VALUE`, split at the first `=`, the key in any case;
only `UseSyslog` stands alone. A section needs `sequence` or
`one_time_sequences`.

What knockd itself would refuse to read (a directive outside a section, a
bad port, protocol, flag or number) is a ConfigError. Directives that
logknock cannot carry over, and directives knockd does not know, are kept as
warnings (`Knockd.findings`), never dropped silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .config_check import WARNING, Finding
from .errors import ConfigError, Location
from .onetime import parse_token
from .schema import Step

SEQ_TIMEOUT = 25  # knockd's default, seconds
OPTIONS = "options"
ALIASES = {"COMMAND": "START_COMMAND", "COMMAND_6": "START_COMMAND_6", "TIMEOUT": "SEQ_TIMEOUT"}
KNOCKD_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG")
_NOT_NEEDED = {
    "USESYSLOG": "logknock logs to stderr, which the journal keeps",
    "LOGFILE": "logknock logs to stderr, which the journal keeps",
    "PIDFILE": "logknock runs in the foreground under its service manager",
}


@dataclass(frozen=True, slots=True)
class Command:
    """A knockd command as written, `%IP%` included; "" means: run nothing."""

    text: str
    line: int
    section: str


@dataclass(frozen=True, slots=True)
class Door:
    """One knockd section (knockd calls it a door), read but not yet converted."""

    name: str
    line: int
    steps: tuple[Step, ...] = ()
    one_time: str | None = None
    seq_timeout: int = SEQ_TIMEOUT
    flags_set: frozenset[str] = frozenset()
    flags_unset: frozenset[str] = frozenset()
    start: Command | None = None
    start6: Command | None = None  # None: the IPv4 command serves IPv6 too
    stop: Command | None = None
    stop6: Command | None = None
    cmd_timeout: int | None = None
    lines: tuple[tuple[str, int], ...] = ()  # (directive, its line), in file order

    def line_of(self, key: str) -> int:
        return dict(self.lines).get(key, self.line)


@dataclass(frozen=True, slots=True)
class Knockd:
    path: str
    doors: tuple[Door, ...]
    findings: tuple[Finding, ...]


@dataclass(frozen=True, slots=True)
class _Entry:
    key: str  # upper case, aliases resolved
    written: str  # the key as written
    value: str | None  # None: a bare word
    line: int


@dataclass(slots=True)
class _Section:
    name: str
    line: int
    entries: list[_Entry] = field(default_factory=list)


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[tuple[Location, str]] = []
        self.findings: list[Finding] = []

    def error(self, line: int, message: str) -> None:
        self.problems.append((Location(self.path, line), message))

    def warn(self, line: int, message: str) -> None:
        self.findings.append(Finding(WARNING, Location(self.path, line), message))


def read_knockd(text: str, path: str) -> Knockd:
    """The sections of a knockd.conf; ConfigError lists what knockd would refuse."""
    r = _Reader(path)
    sections = _sections(r, text)
    doors = []
    for section in sections:
        if section.name == OPTIONS:
            _options(r, section)
        else:
            doors.append(_door(r, section))
    if r.problems:
        raise ConfigError(sorted(r.problems, key=lambda problem: problem[0].line or 0))
    return Knockd(path, tuple(doors), tuple(r.findings))


def _sections(r: _Reader, text: str) -> list[_Section]:
    sections: list[_Section] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]") and len(line) > 1:
            if line == "[]":
                r.error(number, "bad section name: []")
            sections.append(_Section(line[1:-1], number))
        elif not sections:
            r.error(number, "a directive before any [section]: knockd refuses it")
        else:
            entry = _entry(r, line, number)
            if entry is not None:
                sections[-1].entries.append(entry)
    return sections


def _entry(r: _Reader, line: str, number: int) -> _Entry | None:
    written, equals, value = line.partition("=")
    written = written.strip()
    key = ALIASES.get(written.upper(), written.upper())
    if not equals and key != "USESYSLOG":
        r.error(number, f"expected KEY = VALUE or [section], not '{line}'")
        return None
    return _Entry(key, written, value.strip() if equals else None, number)


def _options(r: _Reader, section: _Section) -> None:
    for entry in section.entries:
        if entry.key in _NOT_NEEDED:
            r.warn(entry.line, f"{entry.written} is not needed: {_NOT_NEEDED[entry.key]}")
        elif entry.key == "INTERFACE":
            r.warn(
                entry.line,
                f"{entry.written} = {entry.value} is not supported: logknock sees the knocks "
                "its firewall rules log; limit those rules to the interface (iifname)",
            )
        else:
            r.warn(entry.line, f"unknown option '{entry.written}' ignored (knockd refuses it)")


def _door(r: _Reader, section: _Section) -> Door:
    door = Door(section.name, section.line)
    for entry in section.entries:
        door = _directive(r, door, entry)
    given = {key for key, _ in door.lines}
    if not given & {"SEQUENCE", "ONE_TIME_SEQUENCES"}:
        r.error(section.line, f"[{section.name}] has no sequence or one_time_sequences")
    if door.steps and door.one_time is not None:
        r.warn(
            door.line_of("ONE_TIME_SEQUENCES"),
            f"[{door.name}] has both sequence and one_time_sequences: "
            "the one-time sequences are used, as knockd does once the first is knocked",
        )
    return door


def _directive(r: _Reader, door: Door, entry: _Entry) -> Door:
    if entry.key in _NOT_NEEDED:
        r.warn(entry.line, f"{entry.written} is not needed: {_NOT_NEEDED[entry.key]}")
        return door
    handler = _HANDLERS.get(entry.key)
    if handler is None:
        r.warn(entry.line, f"unknown directive '{entry.written}' ignored (knockd refuses it)")
        return door
    if entry.key in dict(door.lines):
        r.warn(
            entry.line,
            f"{entry.key.lower()} given again (before on line {door.line_of(entry.key)}): "
            "the last one counts, as in knockd",
        )
    try:
        door = handler(r, door, entry)
    except ValueError as exc:
        r.error(entry.line, f"{entry.written}: {exc}")
    return replace(door, lines=(*door.lines, (entry.key, entry.line)))


def _text(entry: _Entry) -> str:
    return entry.value or ""


def _sequence(r: _Reader, door: Door, entry: _Entry) -> Door:
    steps = tuple(parse_token(item.strip()) for item in _text(entry).split(","))
    return replace(door, steps=steps)


def _one_time(r: _Reader, door: Door, entry: _Entry) -> Door:
    path = _text(entry)
    if not path:
        raise ValueError("needs a file")
    if not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.abspath(r.path)), path)
        r.warn(
            entry.line,
            f"one_time_sequences: a relative path; knockd opened it from its working "
            f"directory, logknock reads {path}",
        )
    return replace(door, one_time=path)


def _seconds(entry: _Entry, minimum: int) -> int:
    value = _text(entry)
    if not value.isascii() or not value.isdigit():
        raise ValueError(f"'{value}' is not a whole number of seconds")
    if int(value) < minimum:
        raise ValueError(f"{value} is too short: must be at least {minimum} second")
    return int(value)


def _seq_timeout(r: _Reader, door: Door, entry: _Entry) -> Door:
    return replace(door, seq_timeout=_seconds(entry, 1))


def _cmd_timeout(r: _Reader, door: Door, entry: _Entry) -> Door:
    return replace(door, cmd_timeout=_seconds(entry, 0))


def _flags(r: _Reader, door: Door, entry: _Entry) -> Door:
    wanted: dict[str, bool] = {}
    for item in _text(entry).upper().split(","):
        word = item.strip()
        name = word.removeprefix("!")
        if name not in KNOCKD_FLAGS:
            raise ValueError(f"unknown flag '{word.lower()}': use {', '.join(KNOCKD_FLAGS)}")
        if name in wanted:
            r.warn(entry.line, f"tcpflags: {name.lower()} given twice: the last one counts")
        wanted[name] = not word.startswith("!")
    flags_set = frozenset(name for name, on in wanted.items() if on)
    return replace(door, flags_set=flags_set, flags_unset=frozenset(wanted) - flags_set)


def _command(door: Door, entry: _Entry) -> Command:
    return Command(_text(entry), entry.line, door.name)


def _start(r: _Reader, door: Door, entry: _Entry) -> Door:
    return replace(door, start=_command(door, entry))


def _start6(r: _Reader, door: Door, entry: _Entry) -> Door:
    return replace(door, start6=_command(door, entry))


def _stop(r: _Reader, door: Door, entry: _Entry) -> Door:
    return replace(door, stop=_command(door, entry))


def _stop6(r: _Reader, door: Door, entry: _Entry) -> Door:
    return replace(door, stop6=_command(door, entry))


def _target(r: _Reader, door: Door, entry: _Entry) -> Door:
    r.warn(
        entry.line,
        f"target = {entry.value} is not supported: logknock matches knocks to every "
        "address its firewall rules log (input chain); the sequence was converted without it",
    )
    return door


_HANDLERS: dict[str, Callable[[_Reader, Door, _Entry], Door]] = {
    "SEQUENCE": _sequence,
    "ONE_TIME_SEQUENCES": _one_time,
    "SEQ_TIMEOUT": _seq_timeout,
    "TCPFLAGS": _flags,
    "START_COMMAND": _start,
    "START_COMMAND_6": _start6,
    "STOP_COMMAND": _stop,
    "STOP_COMMAND_6": _stop6,
    "CMD_TIMEOUT": _cmd_timeout,
    "TARGET": _target,
}
