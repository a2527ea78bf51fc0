"""The loaded nft table against the configuration: `live_problems(config)`.

Reads `nft -j list table inet logknock` and reports what the daemon and the
hooks need but the live table lacks: a grant set, a knock or protected port,
a rule using a set, log rules with the configured prefix. Nothing is reported
when it cannot tell: nft missing, no permission, or the table not loaded (a
host using iptables, or `check` run on another machine).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .firewall_model import FirewallError, Options, PortRange, Run, merge, plan, run_command
from .firewall_nft import GRANT_SETS
from .schema import Config

LIST_TABLE = ["nft", "-j", "list", "table", "inet", "logknock"]
PROTO_NUMBERS = {6: "tcp", 17: "udp"}
_CANNOT_TELL = ("No such file or directory", "Operation not permitted", "Permission denied")


@dataclass(frozen=True, slots=True)
class LiveTable:
    sets: dict[str, dict[str, Any]]
    chains: dict[str, dict[str, Any]]
    rules: list[dict[str, Any]]


def live_problems(config: Config, run: Run = run_command) -> list[str]:
    """What the loaded table lacks for `config`; [] when there is none to read."""
    table = read_table(run)
    if table is None:
        return []
    found = [*_grant_problems(table), *_chain_problems(table)]
    return found + list(_port_problems(config, table)) + list(_prefix_problems(config, table))


def read_table(run: Run = run_command) -> LiveTable | None:
    """The loaded table inet logknock, or None when nft cannot show it."""
    try:
        proc = run(LIST_TABLE, None)
    except FirewallError:
        return None  # nft is not installed
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")
        if any(text in err for text in _CANNOT_TELL):
            return None
        raise FirewallError(f"{' '.join(LIST_TABLE)}: exit {proc.returncode}: {err.strip()}")
    return parse_table(json.loads(proc.stdout))


def parse_table(data: dict[str, Any]) -> LiveTable:
    """Sets and chains by name, and the rules, from `nft -j` output."""
    items = data.get("nftables", [])
    return LiveTable(
        sets={item["set"]["name"]: item["set"] for item in items if "set" in item},
        chains={item["chain"]["name"]: item["chain"] for item in items if "chain" in item},
        rules=[item["rule"] for item in items if "rule" in item],
    )


def _grant_problems(table: LiveTable) -> Iterator[str]:
    for name, addr in GRANT_SETS.items():
        found = table.sets.get(name)
        family = "IPv4" if addr == "ipv4_addr" else "IPv6"
        if found is None:
            yield f"set {name} is missing: the hooks cannot open anything for {family}"
        elif found.get("type") != [addr, "inet_proto", "inet_service"]:
            yield f"set {name} has type {found.get('type')}, not {addr} . inet_proto . inet_service"
        elif "timeout" not in found.get("flags", []):
            yield f"set {name} lacks flags timeout: the kernel would not expire grants"


def _chain_problems(table: LiveTable) -> Iterator[str]:
    chain = table.chains.get("input", {})
    if chain.get("hook") != "input":
        yield "chain input is missing or not hooked to input: nothing is logged or dropped"
    used = {name for rule in table.rules for name in _set_refs(rule.get("expr"))}
    for name in ("grants4", "grants6", "protected", "knocks"):
        if name not in used:
            yield f"no rule uses set {name}"


def _set_refs(node: object) -> Iterator[str]:
    """The names of sets (`@name`) anywhere in a rule's expressions."""
    if isinstance(node, str) and node.startswith("@"):
        yield node[1:]
    elif isinstance(node, dict):
        for value in node.values():
            yield from _set_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _set_refs(value)


def _port_problems(config: Config, table: LiveTable) -> Iterator[str]:
    wanted = plan(config, Options())
    for name, ranges in (("knocks", wanted.knocks), ("protected", wanted.protected)):
        live = merge(_elements(table.sets.get(name, {})))
        missing = [str(r) for r in ranges if not any(r in have for have in live)]
        if missing:
            shown = ", ".join(missing[:8]) + (", ..." if len(missing) > 8 else "")
            yield f"set {name} lacks {shown}: render and apply the rules again"


def _elements(found: dict[str, Any]) -> Iterator[PortRange]:
    for elem in found.get("elem", []):
        value = elem["elem"]["val"] if isinstance(elem, dict) and "elem" in elem else elem
        parts = value.get("concat", []) if isinstance(value, dict) else []
        if len(parts) == 2:
            proto = PROTO_NUMBERS.get(parts[0], parts[0])
            low, high = parts[1]["range"] if isinstance(parts[1], dict) else (parts[1],) * 2
            yield PortRange(str(proto), int(low), int(high))


def _prefix_problems(config: Config, table: LiveTable) -> Iterator[str]:
    prefixes = {
        expr["log"].get("prefix", "")
        for rule in table.rules
        for expr in rule.get("expr", [])
        if isinstance(expr, dict) and isinstance(expr.get("log"), dict)
    }
    if not prefixes:
        yield "no rule logs: the daemon will see no knocks"
    elif prefixes != {config.prefix}:
        shown = ", ".join(repr(p) for p in sorted(prefixes))
        yield f"the rules log with prefix {shown}, the configuration expects {config.prefix!r}"
