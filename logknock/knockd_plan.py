"""Deciding what each knockd section becomes in logknock.

    plan_doors(knockd, open_for, mark_dir) -> (plans, findings)

A section with a start_command becomes a sequence that opens, with a hook
running its commands (knockd_hook). Its `open:` lists the ports the command
visibly opens (`--dport 22`); `open: []` when it does not say. Closing:

- stop_command: runs when the grant closes, after `open_for` = cmd_timeout
  (knockd's default 10 s when left out).
- no stop_command, but another section whose command undoes this one's
  (knockd's own example: [openSSH] `iptables -A ...`, [closeSSH]
  `iptables -D ...`): that section becomes `closes: openSSH`, the hook runs
  its command on close, and the grant also closes by itself after
  `open_for` (the converter's --open-for), which knockd never did.
- neither: nothing runs on close, as in knockd.

Each difference from knockd's behaviour is a warning naming the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .config_check import WARNING, Finding
from .durations import format_duration
from .errors import Location
from .knockd_conf import Command, Door, Knockd
from .knockd_hook import Action, CommandError, HookSpec, render_hook
from .knockd_shell import infer_ports, is_inverse, substitute_ip
from .schema import PortSpec, Step

CMD_TIMEOUT = 10  # knockd's default, seconds
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Plan:
    """One knockd section as a logknock sequence (or why it was left out)."""

    door: Door
    name: str
    knock: tuple[Step, ...] = ()
    closes: str | None = None
    open: tuple[PortSpec, ...] = ()
    open_for: float | None = None  # None: logknock's default
    hook: HookSpec | None = None
    script: str | None = None  # the hook's text
    notes: tuple[tuple[str, str], ...] = ()  # (key, comment) for the YAML
    left_out: str | None = None  # why the sequence is commented out

    def note(self, key: str) -> str:
        return dict(self.notes).get(key, "")


class _Planner:
    def __init__(self, knockd: Knockd, open_for: float, mark_dir: str) -> None:
        self.knockd, self.open_for, self.mark_dir = knockd, open_for, mark_dir
        self.findings: list[Finding] = []

    def warn(self, line: int, message: str) -> None:
        self.findings.append(Finding(WARNING, Location(self.knockd.path, line), message))


def plan_doors(knockd: Knockd, open_for: float, mark_dir: str) -> tuple[list[Plan], list[Finding]]:
    """A plan per section, in file order, and the warnings they raise."""
    p = _Planner(knockd, open_for, mark_dir)
    doors = knockd.doors
    names = _names(p, doors)
    closers = _closers(doors)
    plans = []
    for index, door in enumerate(doors):
        plan = Plan(door, names[index], knock=_knock(p, door))
        if index in closers:
            plans.append(_closer(p, plan, doors[closers[index]], names[closers[index]]))
        else:
            undo = next((doors[c] for c, o in closers.items() if o == index), None)
            plans.append(_opener(p, plan, undo))
    return plans, p.findings


def _names(p: _Planner, doors: tuple[Door, ...]) -> list[str]:
    """logknock names: letters, digits, - and _, at most 64, unique."""
    names: list[str] = []
    for door in doors:
        base = _NOT_NAME.sub("-", door.name).strip("-_")[:58] or f"section-{door.line}"
        name, count = base, 1
        while name in names:
            count += 1
            name = f"{base}-{count}"
        if name != door.name:
            p.warn(door.line, f"[{door.name}] is named '{name}' in logknock")
        names.append(name)
    return names


def _closers(doors: tuple[Door, ...]) -> dict[int, int]:
    """Sections that only undo another's start: closer index -> opener index."""
    found: dict[int, int] = {}
    for c, closer in enumerate(doors):
        if closer.start is None or closer.stop is not None or closer.stop6 is not None:
            continue
        for o, opener in enumerate(doors):
            if o != c and opener.start is not None and _undoes(closer.start, opener):
                found[c] = o
                break
    return {c: o for c, o in found.items() if o not in found}


def _undoes(command: Command, opener: Door) -> bool:
    if opener.stop is not None:
        return command.text.strip() == opener.stop.text.strip()
    return opener.start is not None and is_inverse(opener.start.text, command.text)


def _knock(p: _Planner, door: Door) -> tuple[Step, ...]:
    flags = door.flags_set or door.flags_unset
    line = door.line_of("TCPFLAGS")
    if flags and door.one_time is not None:
        p.warn(line, "tcpflags cannot apply to one-time sequences (their lines carry no flags)")
    elif flags and all(step.proto != "tcp" for step in door.steps):
        p.warn(line, "tcpflags has no effect: every step of the sequence is udp")
    if door.one_time is not None:
        _one_time_notes(p, door)
        return ()
    return tuple(
        replace(step, flags_set=door.flags_set, flags_unset=door.flags_unset)
        if step.proto == "tcp"
        else step
        for step in door.steps
    )


def _one_time_notes(p: _Planner, door: Door) -> None:
    p.warn(
        door.line_of("ONE_TIME_SEQUENCES"),
        "knockd accepts only the first unused line of a one-time file; logknock accepts "
        "every unused line, each once, and keeps the used ones in its state instead of "
        "commenting them out (the lines knockd commented out stay spent)",
    )


def _closer(p: _Planner, plan: Plan, opener: Door, opener_name: str) -> Plan:
    if opener.stop is not None:
        what = f"runs the stop_command of [{opener.name}] (line {opener.line})"
    else:
        what = f"undoes the start_command of [{opener.name}] (line {opener.line})"
    p.warn(
        plan.door.line_of("START_COMMAND"),
        f"[{plan.door.name}] {what}: it became closes: {opener_name}, and the hook of "
        f"{opener_name} runs the command when the grant closes",
    )
    return replace(plan, closes=opener_name, notes=(("closes", f"knockd: {what}"),))


def _given(command: Command | None) -> Command | None:
    return command if command is not None and command.text else None


def _for_v6(v6: Command | None, v4: Command | None) -> Command | None:
    """knockd 0.8: the IPv4 command unless a _6 one is given (empty: nothing)."""
    return _given(v4) if v6 is None else _given(v6)


def _opener(p: _Planner, plan: Plan, undo: Door | None) -> Plan:
    door = plan.door
    opens = Action(_given(door.start), _for_v6(door.start6, door.start))
    if opens.v4 is None and opens.v6 is None:
        reason = "it runs no start_command"
        p.warn(door.line, f"[{door.name}] left out: {reason}")
        return replace(plan, left_out=reason)
    broken = _unusable(door)
    if broken is not None:
        reason = f"its command cannot be used: {broken.reason}"
        p.warn(broken.command.line, f"[{door.name}] left out: {reason}")
        return replace(plan, left_out=reason)
    closes, open_for, note = _closing(p, door, undo)
    hook = HookSpec(plan.name, p.knockd.path, door.name, door.line, opens, closes, p.mark_dir)
    plan = replace(plan, hook=hook, open_for=open_for, notes=(("open_for", note),))
    return _ports(p, _script(p, plan))


def _unusable(door: Door) -> CommandError | None:
    """The first of the section's commands that cannot go into a hook, and why."""
    for command in (door.start, door.start6, door.stop, door.stop6):
        try:
            substitute_ip(command.text if command else "")
        except ValueError as exc:
            return CommandError(command, str(exc)) if command else None
    return None


def _closing(p: _Planner, door: Door, undo: Door | None) -> tuple[Action | None, float | None, str]:
    """What the hook runs on close, the grant's open_for, and a note about it."""
    if door.stop is not None or door.stop6 is not None:
        action = Action(_given(door.stop), _for_v6(door.stop6, door.stop))
        return action, _cmd_timeout(p, door), "cmd_timeout: then the hook runs stop_command"
    if door.cmd_timeout is not None:
        p.warn(door.line_of("CMD_TIMEOUT"), "cmd_timeout has no effect without stop_command")
    if undo is None:
        p.warn(
            door.line_of("START_COMMAND"),
            f"[{door.name}] has no stop_command: nothing runs when its grant closes, as in "
            "knockd; add stop_command and cmd_timeout to close what it opens",
        )
        return None, None, "nothing runs when it closes (knockd had no stop_command)"
    p.warn(
        door.line,
        f"[{door.name}] stayed open in knockd until [{undo.name}] was knocked; logknock "
        f"also closes it by itself after open_for: {format_duration(p.open_for)} (--open-for)",
    )
    action = Action(_given(undo.start), _for_v6(undo.start6, undo.start))
    return action, p.open_for, f"or sooner by knocking [{undo.name}]"


def _cmd_timeout(p: _Planner, door: Door) -> float:
    if door.cmd_timeout is None:
        return float(CMD_TIMEOUT)
    if door.cmd_timeout == 0:
        p.warn(door.line_of("CMD_TIMEOUT"), "cmd_timeout = 0: a grant lasts at least 1s")
        return 1.0
    return float(door.cmd_timeout)


def _script(p: _Planner, plan: Plan) -> Plan:
    assert plan.hook is not None
    try:
        return replace(plan, script=render_hook(plan.hook))
    except CommandError as exc:
        reason = f"its command cannot be used: {exc.reason}"
        p.warn(exc.command.line, f"[{plan.door.name}] left out: {reason}")
        return replace(plan, hook=None, left_out=reason)


def _ports(p: _Planner, plan: Plan) -> Plan:
    if plan.hook is None:
        return plan
    commands = [plan.hook.open.v4, plan.hook.open.v6]
    ports = tuple(dict.fromkeys(s for c in commands if c for s in infer_ports(c.text)))
    if ports:
        return replace(plan, open=ports, notes=(*plan.notes, ("open", "read from the command")))
    p.warn(
        plan.door.line_of("START_COMMAND"),
        f"[{plan.door.name}]: which port its command opens is not clear; wrote open: [], "
        "list the ports there so hooks get them in LOGKNOCK_PORTS",
    )
    return replace(plan, notes=(*plan.notes, ("open", "TODO: the ports the command opens")))
