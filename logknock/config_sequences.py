"""Building the `sequences:` section: each sequence, then the rules between them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import pairwise

from . import config_values as values
from .config_kinds import read_one_time, read_totp
from .config_reader import Reader, suggest
from .config_yaml import Node
from .durations import format_duration
from .errors import Location
from .schema import PortSpec, Sequence, Step

SEQUENCE_KEYS = (
    "knock",
    "one_time",
    "totp",
    "open",
    "open_for",
    "step_timeout",
    "sequence_timeout",
    "hook",
    "closes",
    "toggle",
)
KINDS = ("knock", "one_time", "totp")
DEFAULTS_KEYS = ("step_timeout", "sequence_timeout", "open_for", "hook")


@dataclass(frozen=True, slots=True)
class Defaults:
    """What a sequence gets for the settings it leaves out, and the top-level
    settings it is read with. `hook` is a path once read."""

    step_timeout: float = 5.0
    sequence_timeout: float = 15.0
    open_for: float = 30.0
    hook: str = "nft-set"
    hooks_dir: str = "/etc/logknock/hooks"
    duplicate_window: float = 1.0  # needed to judge repeated steps


def read_defaults(
    r: Reader, node: Node | None, hooks_dir: str, duplicate_window: float
) -> Defaults:
    f = r.fields(node, DEFAULTS_KEYS, "defaults")
    base = Defaults()
    return Defaults(
        step_timeout=r.get(f, "step_timeout", values.duration(0), base.step_timeout),
        sequence_timeout=r.get(f, "sequence_timeout", values.duration(0), base.sequence_timeout),
        open_for=r.get(f, "open_for", values.duration(0), base.open_for),
        hook=resolve_hook(r, r.get(f, "hook", values.hook, base.hook), hooks_dir),
        hooks_dir=hooks_dir,
        duplicate_window=duplicate_window,
    )


def resolve_hook(r: Reader, name: str, hooks_dir: str) -> str:
    """A bare name is a file in hooks_dir; anything with a "/" is a path."""
    return r.resolve(name) if "/" in name else os.path.join(hooks_dir, name)


def read_sequences(r: Reader, node: Node | None, defaults: Defaults) -> tuple[Sequence, ...]:
    """Every sequence that has no problem; the problems go to the reader."""
    if node is None or node.value is None:
        return ()
    if not isinstance(node.value, dict):
        r.error(node.loc, "sequences must be a mapping from names to sequences")
        return ()
    nodes: dict[str, Node] = node.value
    built = {}
    for name, child in nodes.items():
        sequence = _sequence(r, name, child, defaults)
        if sequence is not None:
            built[name] = sequence
    _check_closes(r, built, nodes)
    _check_same_knock(r, built, nodes)
    return tuple(built.values())


def _sequence(r: Reader, name: str, node: Node, defaults: Defaults) -> Sequence | None:
    before = len(r.problems)
    _check_name(r, name, node)
    f = r.fields(node, SEQUENCE_KEYS, f"sequence '{name}'")
    _check_kind(r, name, node, f)
    one_time_file, one_time = read_one_time(r, f.get("one_time"))
    sequence = Sequence(
        name=name,
        knock=_knock(r, f),
        open=_open(r, f),
        open_for=r.get(f, "open_for", values.duration(0), defaults.open_for),
        step_timeout=r.get(f, "step_timeout", values.duration(0), defaults.step_timeout),
        sequence_timeout=r.get(
            f, "sequence_timeout", values.duration(0), defaults.sequence_timeout
        ),
        hook=_hook(r, f, defaults),
        closes=r.get(f, "closes", values.text, None),
        toggle=r.get(f, "toggle", values.boolean, False),
        one_time_file=one_time_file,
        one_time=one_time,
        totp=read_totp(r, f.get("totp")),
    )
    _check_roles(r, sequence, node, f)
    _check_completion(r, sequence, f, defaults.duplicate_window)
    return sequence if len(r.problems) == before else None


def _check_name(r: Reader, name: str, node: Node) -> None:
    try:
        values.sequence_name(name)
    except ValueError as exc:
        r.error(node.key_loc, str(exc))


def _check_kind(r: Reader, name: str, node: Node, f: dict[str, Node]) -> None:
    kinds = [kind for kind in KINDS if kind in f]
    if len(kinds) != 1:
        found = f" (it has {' and '.join(kinds)})" if kinds else ""
        message = f"sequence '{name}' needs exactly one of knock, one_time or totp{found}"
        r.error(node.key_loc, message)


def _knock(r: Reader, f: dict[str, Node]) -> tuple[Step, ...]:
    steps = r.items(f, "knock", values.step)
    if steps == () and "knock" in f:
        r.error(f["knock"].loc, "knock: needs at least one step")
    return steps or ()


def _open(r: Reader, f: dict[str, Node]) -> tuple[PortSpec, ...]:
    ports = r.items(f, "open", values.parse_port_spec) or ()
    twice = sorted({str(port) for port in ports if ports.count(port) > 1})
    if twice:
        r.error(f["open"].loc, f"open: {', '.join(twice)} listed more than once")
    return ports


def _hook(r: Reader, f: dict[str, Node], defaults: Defaults) -> str | None:
    if "closes" in f:
        return None  # closing runs the hook of the sequence that opened
    if "hook" not in f:
        return defaults.hook
    return resolve_hook(r, r.get(f, "hook", values.hook, defaults.hook), defaults.hooks_dir)


def _check_roles(r: Reader, s: Sequence, node: Node, f: dict[str, Node]) -> None:
    """What a sequence does: open ports, close another's grant, or toggle its own."""
    if s.closes and s.toggle:
        r.error(f["toggle"].key_loc, "toggle and closes exclude each other: a toggle closes itself")
    if s.closes and "open" in f:
        r.error(f["open"].key_loc, f"open: a sequence that closes '{s.closes}' opens nothing")
    if s.closes and "hook" in f:
        r.error(f["hook"].key_loc, f"hook: closing runs the hook of '{s.closes}'")
    if not s.closes and "open" not in f:
        r.error(node.key_loc, f"sequence '{s.name}' does nothing: give it open: or closes:")
    if s.toggle and "one_time" in f:
        r.error(f["toggle"].key_loc, "toggle cannot work with one_time: each line knocks once")


def _check_completion(r: Reader, s: Sequence, f: dict[str, Node], window: float) -> None:
    """Report a knock or one-time line that no client could ever complete."""
    if s.knock:
        problem = completion_problem(s.knock, s, window)
        if problem:
            r.error(f["knock"].loc, f"knock: {problem}")
    for number, steps in enumerate(s.one_time, start=1):
        problem = completion_problem(steps, s, window)
        if problem:
            r.error(f["one_time"].loc, f"one_time: sequence {number} of the file {problem}")


def completion_problem(steps: tuple[Step, ...], s: Sequence, window: float) -> str | None:
    """Why `steps` can never complete, or None.

    A knock identical to the one just before (same port and protocol) is
    ignored as a duplicate for `duplicate_window`, so a repeated step only
    counts after that window: it must fit in step_timeout and, all repeats
    together, in sequence_timeout.
    """
    repeats = sum(1 for a, b in pairwise(steps) if (a.port, a.proto) == (b.port, b.proto))
    if not repeats or window == 0:
        return None
    shown = f"duplicate_window ({format_duration(window)})"
    if s.step_timeout <= window:
        step = format_duration(s.step_timeout)
        return f"repeats a step, but step_timeout ({step}) is not longer than {shown}"
    if repeats * window >= s.sequence_timeout:
        total = format_duration(s.sequence_timeout)
        return (
            f"repeats {repeats} steps, each counted only after {shown}: "
            f"they need more than sequence_timeout ({total})"
        )
    return None


def _check_closes(r: Reader, built: dict[str, Sequence], nodes: dict[str, Node]) -> None:
    for name, sequence in built.items():
        target = sequence.closes
        if target is None:
            continue
        where = _loc(nodes[name], "closes")
        if target == name:
            r.error(where, "closes: a sequence cannot close itself")
        elif target not in nodes:
            r.error(where, f"closes: no sequence is named '{target}'{suggest(target, nodes)}")
        elif target in built and built[target].closes:
            r.error(where, f"closes: '{target}' opens nothing to close (it closes another)")


def _check_same_knock(r: Reader, built: dict[str, Sequence], nodes: dict[str, Node]) -> None:
    first: dict[tuple[Step, ...], str] = {}
    for name, sequence in built.items():
        other = first.setdefault(sequence.knock, name) if sequence.knock else name
        if other != name:
            r.error(_loc(nodes[name], "knock"), f"knock: the same knock as sequence '{other}'")


def _loc(node: Node, key: str) -> Location:
    child = node.value.get(key) if isinstance(node.value, dict) else None
    return child.loc if child is not None else node.key_loc
