"""Writing the converted configuration as commented YAML.

    render_config(source, plans, findings) -> (text, spans)

`spans` maps each sequence name to the lines its block takes, so a problem
that `config.load` finds in the text can be traced back to its section.
A plan that was left out is written commented out, with the reason.
"""

from __future__ import annotations

import json

from .config_check import Finding
from .durations import format_duration
from .knockd_hook import one_line
from .knockd_plan import Plan

HOOKS_DIR = "hooks"

_HEADER = """\
# logknock configuration converted from {source} by `logknock import-knockd`.
#
# Each knockd section is a sequence below. Its hook, {hooks}/knockd-NAME, runs
# the section's knockd commands: start_command when a grant opens,
# stop_command when it closes (knockd's cmd_timeout became open_for).
# knockd's seq_timeout limits the whole knock: it became sequence_timeout,
# and step_timeout (the longest pause between two knocks) is the same,
# since knockd has no such limit.
#
# The hooks change your own firewall rules, as knockd's commands did; they do
# not fill logknock's grant sets. So open: stays empty (the ports the commands
# open are noted beside it): `logknock firewall render` protects only ports
# listed in open:, for addresses in its grant sets. To move to logknock's own
# rules, list the ports in open: and use hook: nft-set (docs/firewall.md).
"""


def render_config(
    source: str, plans: list[Plan], findings: list[Finding]
) -> tuple[str, dict[str, range]]:
    """The configuration text, and the lines (from 1) of each sequence's block."""
    lines = _HEADER.format(source=one_line(source), hooks=HOOKS_DIR).splitlines()
    lines += _findings(findings)
    lines += ["#", "# Check it with: logknock check --config logknock.yaml", "", "sequences:"]
    spans: dict[str, range] = {}
    for plan in plans:
        block = _block(plan)
        if plan.left_out is not None:
            block = [_commented(line) for line in block]
        spans[plan.name] = range(len(lines) + 1, len(lines) + len(block) + 1)
        lines += block
    return "\n".join(lines) + "\n", spans


def _commented(line: str) -> str:
    return line if not line.strip() or line.lstrip().startswith("#") else "  # " + line[2:]


def _findings(findings: list[Finding]) -> list[str]:
    if not findings:
        return ["#", "# Everything in the knockd.conf carried over."]
    lines = ["#", "# What did not carry over as it was (also printed by the conversion):"]
    return lines + [f"#   {one_line(str(finding))}" for finding in findings]


def _block(plan: Plan) -> list[str]:
    door = plan.door
    where = f"[{door.name}], line {door.line}"
    if plan.left_out is not None:
        where += f": left out, {plan.left_out}"
    lines = ["", f"  # {where}", f"  {plan.name}:"]
    lines += _knock(plan)
    seconds = format_duration(door.seq_timeout)
    lines.append(_line("sequence_timeout", seconds, f"seq_timeout = {door.seq_timeout}"))
    lines.append(_line("step_timeout", seconds, "knockd limits only the whole knock"))
    if plan.closes is not None:
        lines.append(_line("closes", plan.closes, plan.note("closes")))
        return lines
    # The knockd commands open the ports themselves: listing them in open:
    # would make `logknock firewall render` drop them for everyone else.
    ports = ", ".join(str(port) for port in plan.open) or "unknown"
    lines.append(_line("open", "[]", f"the commands open: {ports}; {plan.note('open')}"))
    if plan.open_for is not None:
        lines.append(_line("open_for", format_duration(plan.open_for), plan.note("open_for")))
    if plan.hook is not None:
        lines.append(_line("hook", f"{HOOKS_DIR}/{plan.hook.file_name}", ""))
    return lines


def _knock(plan: Plan) -> list[str]:
    if plan.door.one_time is not None:
        return [_line("one_time", json.dumps(plan.door.one_time), "one_time_sequences")]
    steps = [str(step) for step in plan.knock]
    if any(":" in step for step in steps):  # flags: a block list, as "," splits a [...] list
        return ["    knock:", *(f"      - {step}" for step in steps)]
    return [_line("knock", f"[{', '.join(steps)}]", "")]


def _line(key: str, value: str, comment: str) -> str:
    text = f"    {key}: {value}"
    return f"{text:<40} # {comment}" if comment else text
