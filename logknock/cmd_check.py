"""`logknock check`: read the configuration and say whether the daemon can use it.

Like `nginx -t`: every problem goes to stderr as `FILE:LINE:COL: error: ...`
or `... warning: ...`; the verdict is the last line. Exit 0 when the
configuration is usable (warnings allowed), 2 when it is not.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import firewall
from .config import DEFAULT_PATH, load_with_marks
from .config_check import ERROR, WARNING, Finding, findings
from .config_yaml import Marks
from .errors import EXIT_OK, EXIT_UNUSABLE, ConfigError, PackError
from .firewall import FirewallError
from .packs import load_pack
from .schema import Config


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate the configuration (like nginx -t)",
        description="Load the configuration, report errors and warnings with file:line:column, "
        "and exit 0 when the daemon can use it, 2 when it cannot.",
    )
    parser.add_argument(
        "--config", "-c", default=DEFAULT_PATH, metavar="PATH", help=f"default: {DEFAULT_PATH}"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path: str = args.config
    try:
        config, marks = load_with_marks(path)
    except ConfigError as exc:
        found = [Finding(ERROR, loc, message) for loc, message in exc.problems]
        return _report(path, found, None)
    found = findings(config, marks) + _pack_findings(config, marks)
    found += _firewall_findings(config, marks)
    return _report(path, found, len(config.sequences))


def _firewall_findings(config: Config, marks: Marks) -> list[Finding]:
    """Rules and sequences that do not fit: from the config, and from the loaded table."""
    try:
        found = firewall.problems(config) + firewall.live_problems(config)
    except FirewallError as exc:
        found = [f"cannot read the loaded rules: {exc}"]
    return [Finding(WARNING, marks("sequences"), f"firewall: {text}") for text in found]


def _pack_findings(config: Config, marks: Marks) -> list[Finding]:
    """The daemon cannot start without its pattern pack: check it loads."""
    try:
        load_pack(config.pack, config.patterns_dir)
    except PackError as exc:
        return [Finding(ERROR, marks("pack"), str(exc))]
    return []


def _report(path: str, found: list[Finding], sequences: int | None) -> int:
    """Print the findings and the verdict; the exit code."""
    for finding in found:
        print(finding, file=sys.stderr)
    errors = sum(1 for finding in found if finding.severity == ERROR)
    warnings = len(found) - errors
    counts = _plural(warnings, "warning")
    if errors:
        counts = f"{_plural(errors, 'error')}, {counts}"
        print(f"logknock: configuration {path} is not usable ({counts})", file=sys.stderr)
        return EXIT_UNUSABLE
    counts = f"{_plural(sequences or 0, 'sequence')}, {counts}"
    print(f"logknock: configuration {path} is usable ({counts})")
    return EXIT_OK


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
