"""What `logknock check` reports about a configuration that loads.

Warnings are choices that work but weaken the knock (guessable sequences,
unsafe file modes, a prefix iptables would cut). Errors here are things
`load()` accepts but the daemon refuses or this host cannot serve: an
untrusted file source, a hook a sequence names that is missing, a missing
patterns_dir. docs/configuration.md lists each rule.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from .config_yaml import Marks
from .errors import Location
from .hooks import hook_problem
from .schema import Config, PortSpec, Sequence

ERROR = "error"
WARNING = "warning"
IPTABLES_PREFIX = 29  # iptables' LOG target keeps this many characters of the prefix
MIN_SECRET = 16  # bytes: 128 bits
WELL_KNOWN_PORTS = {
    **{21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "dns", 80: "http", 110: "pop3"},
    **{123: "ntp", 143: "imap", 443: "https", 465: "smtps", 587: "submission", 993: "imaps"},
    **{995: "pop3s", 3306: "mysql", 3389: "rdp", 5432: "postgresql", 8080: "http-alt"},
}


@dataclass(frozen=True, slots=True)
class Finding:
    severity: str  # ERROR or WARNING
    loc: Location
    message: str

    def __str__(self) -> str:
        return f"{self.loc}: {self.severity}: {self.message}"


def findings(config: Config, marks: Marks, *, uid: int | None = None) -> list[Finding]:
    """Every warning and check-time error, in file order.

    `uid` is the user besides root that may own hooks and secrets (default: ours).
    """
    owner = os.geteuid() if uid is None else uid
    found = [*_prefix(config, marks), *_sources(config, marks), *_patterns_dir(config, marks)]
    for sequence in config.sequences:
        found += _knock(sequence, config, marks)
        found += _files(sequence, marks, owner)
    found += _begins_with_other(config, marks)
    found += _closer_repeats_last_step(config, marks)
    found += _hooks(config, marks, owner)
    return sorted(found, key=lambda f: (f.loc.path, f.loc.line or 0, f.loc.column or 0))


def warnings(config: Config, marks: Marks, *, uid: int | None = None) -> list[tuple[Location, str]]:
    """What `check` warns about: the configuration works, but should change."""
    return [(f.loc, f.message) for f in findings(config, marks, uid=uid) if f.severity == WARNING]


def errors(config: Config, marks: Marks, *, uid: int | None = None) -> list[tuple[Location, str]]:
    """What makes `check` fail although `load()` accepted the configuration."""
    return [(f.loc, f.message) for f in findings(config, marks, uid=uid) if f.severity == ERROR]


def _prefix(config: Config, marks: Marks) -> Iterator[Finding]:
    if len(config.prefix) > IPTABLES_PREFIX:
        yield Finding(
            WARNING,
            marks("prefix"),
            f"prefix is {len(config.prefix)} characters: iptables' LOG keeps only "
            f"{IPTABLES_PREFIX}, so only nft rules can log it whole",
        )


def _sources(config: Config, marks: Marks) -> Iterator[Finding]:
    for index, source in enumerate(config.sources):
        if source.kind == "file" and source.trust != "kernel-only":
            yield Finding(
                ERROR,
                marks(f"source.{index}"),
                f"file source {source.path} is not marked 'trust: kernel-only': a text file "
                "cannot prove a line came from the kernel, so the daemon refuses it; use it "
                "only for a file that just the kernel can fill, and mark it so",
            )


def _patterns_dir(config: Config, marks: Marks) -> Iterator[Finding]:
    if config.patterns_dir is not None and not os.path.isdir(config.patterns_dir):
        yield Finding(
            ERROR, marks("patterns_dir"), f"patterns_dir {config.patterns_dir} is not a folder"
        )


def _knock(sequence: Sequence, config: Config, marks: Marks) -> Iterator[Finding]:
    """Weak knocks: short, walking in one direction, or on ports with other traffic."""
    base = f"sequences.{sequence.name}"
    ports = [step.port for step in sequence.knock]
    count = sequence.totp.steps if sequence.totp else len(ports)
    if (ports or sequence.totp) and count < 3:
        where = f"{base}.totp.steps" if sequence.totp else f"{base}.knock"
        yield Finding(
            WARNING,
            marks(where),
            f"only {count} step(s): stray traffic or a scan can complete it; use 3 or more",
        )
    if len(ports) >= 3 and _monotonic(ports):
        yield Finding(
            WARNING,
            marks(f"{base}.knock"),
            "the ports only go one way: a port scan walking up or down knocks it",
        )
    for index, step in enumerate(sequence.knock):
        reason = _busy(step.port, PortSpec(step.port, step.proto), config)
        if reason:
            yield Finding(WARNING, marks(f"{base}.knock.{index}"), f"knock port {step}: {reason}")
    if sequence.totp:
        yield from _totp_range(sequence, config, marks)


def _monotonic(ports: list[int]) -> bool:
    pairs = list(pairwise(ports))
    return all(a < b for a, b in pairs) or all(a > b for a, b in pairs)


def _busy(port: int, spec: PortSpec, config: Config) -> str | None:
    """Why knocks on `port` would mix with ordinary traffic, or None."""
    if port in WELL_KNOWN_PORTS:
        return f"{WELL_KNOWN_PORTS[port]} uses it, so ordinary traffic counts as knocks"
    openers = [s.name for s in config.sequences if spec in s.open]
    return f"sequence '{openers[0]}' opens it, so its traffic counts as knocks" if openers else None


def _totp_range(sequence: Sequence, config: Config, marks: Marks) -> Iterator[Finding]:
    assert sequence.totp is not None
    totp = sequence.totp
    clash = sorted({p.port for s in config.sequences for p in s.open if p.proto == totp.proto})
    clash += sorted(WELL_KNOWN_PORTS)
    inside = sorted({port for port in clash if totp.port_low <= port <= totp.port_high})
    if inside:
        shown = ", ".join(str(port) for port in inside)
        where = marks(f"sequences.{sequence.name}.totp.ports")
        yield Finding(
            WARNING,
            where,
            f"the port range holds busy ports ({shown}): their traffic counts as knocks",
        )
    if len(totp.secret) < MIN_SECRET:
        where = marks(f"sequences.{sequence.name}.totp.secret_file")
        yield Finding(
            WARNING, where, f"the secret has {len(totp.secret)} bytes: use at least {MIN_SECRET}"
        )


def _files(sequence: Sequence, marks: Marks, uid: int) -> Iterator[Finding]:
    """Secret and one-time files: readable only by their owner, and not used up."""
    base = f"sequences.{sequence.name}"
    if sequence.totp:
        where = marks(f"{base}.totp.secret_file")
        yield from _private(sequence.totp.secret_file, where, "knows the secret", uid)
    if sequence.one_time_file:
        where = marks(f"{base}.one_time")
        yield from _private(sequence.one_time_file, where, "can read the knocks", uid)
        if not sequence.one_time:
            yield Finding(WARNING, where, f"{sequence.one_time_file} has no sequence left")


def _private(path: str, where: Location, leak: str, uid: int) -> Iterator[Finding]:
    try:
        info = os.stat(path)
    except OSError as exc:
        yield Finding(ERROR, where, f"cannot stat {path}: {exc.strerror}")
        return
    if info.st_mode & 0o044:
        yield Finding(
            WARNING, where, f"{path} is readable by group or others: whoever reads it {leak}"
        )
    if info.st_uid not in (0, uid):
        yield Finding(WARNING, where, f"{path} belongs to uid {info.st_uid}, not root")


def _begins_with_other(config: Config, marks: Marks) -> Iterator[Finding]:
    knocks = [s for s in config.sequences if s.knock]
    for long in knocks:
        for short in knocks:
            if len(short.knock) < len(long.knock) and long.knock[: len(short.knock)] == short.knock:
                yield Finding(
                    WARNING,
                    marks(f"sequences.{long.name}.knock"),
                    f"begins with the whole knock of '{short.name}': knocking it completes "
                    f"'{short.name}' on the way",
                )


def _closer_repeats_last_step(config: Config, marks: Marks) -> Iterator[Finding]:
    """A close sequence whose first step is its opener's last: knocked right after
    the open, that first step is taken for a duplicate of the last and ignored."""
    for closer in config.sequences:
        opener = config.sequence(closer.closes) if closer.closes else None
        if opener and opener.knock and closer.knock and closer.knock[0] == opener.knock[-1]:
            yield Finding(
                WARNING,
                marks(f"sequences.{closer.name}.knock"),
                f"starts with {closer.knock[0]}, the last step of '{opener.name}': within "
                f"duplicate_window ({config.duplicate_window:g}s) of opening it counts as a "
                "repeat and is ignored; knock it later or start with another port",
            )


def _hooks(config: Config, marks: Marks, uid: int) -> Iterator[Finding]:
    """Each hook once: whether the daemon would run it, and who could replace it."""
    seen: set[str] = set()
    named = [s for s in config.sequences if f"sequences.{s.name}.hook" in marks]
    for sequence in named + [s for s in config.sequences if s not in named]:
        if sequence.hook is None or sequence.hook in seen:
            continue
        seen.add(sequence.hook)
        yield from _hook(sequence.hook, _hook_site(sequence, marks), sequence in named, uid)


def _hook_site(sequence: Sequence, marks: Marks) -> Location:
    """Where the hook was chosen: its own `hook:`, else `defaults.hook`, else the sequence."""
    for path in (f"sequences.{sequence.name}.hook", "defaults.hook"):
        if path in marks:
            return marks(path)
    return marks(f"sequences.{sequence.name}")


def _hook(path: str, where: Location, named: bool, uid: int) -> Iterator[Finding]:
    """The daemon refuses a hook that `hook_problem` objects to: an error, except that
    a missing hook the sequence does not name itself is a warning (see the docs)."""
    problem = hook_problem(Path(path), (0, uid))
    if problem is None:
        yield from _replaceable(os.path.dirname(path), where, uid)
        return
    severity = ERROR if named or os.path.lexists(path) else WARNING
    yield Finding(severity, where, f"hook {problem}: the daemon will not run it")


def _replaceable(folder: str, where: Location, uid: int) -> Iterator[Finding]:
    """Warn when someone besides root (or `uid`) could swap the hook in its folder."""
    info = os.stat(folder)
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        yield Finding(
            WARNING, where, f"{folder} is writable by group or others: they could replace the hook"
        )
    if info.st_uid not in (0, uid):
        yield Finding(
            WARNING, where, f"{folder} belongs to uid {info.st_uid}: they could replace the hook"
        )
