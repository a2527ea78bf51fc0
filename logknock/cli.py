"""The command line: builds the parser from each command module, runs one
command, and maps any failure to an exit code in one place.

Each command module has `register(subparsers)`, which adds its parser and sets
`func` to a callable taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import (
    __version__,
    cmd_check,
    cmd_control,
    cmd_demo,
    cmd_firewall,
    cmd_import,
    cmd_knock,
    cmd_patterns,
    cmd_replay,
    cmd_run,
)
from .errors import LogknockError, exit_code_for

COMMAND_MODULES = (
    cmd_run,
    cmd_check,
    cmd_replay,
    cmd_control,
    cmd_knock,
    cmd_firewall,
    cmd_import,
    cmd_demo,
    cmd_patterns,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logknock",
        description="Port knocking driven by the kernel's firewall log.",
    )
    parser.add_argument("--version", action="version", version=f"logknock {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command: the one place where failures become exit codes."""
    try:
        code: int = args.func(args)
    except LogknockError as exc:
        print(f"logknock: {exc}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, BrokenPipeError) as exc:
        return exit_code_for(exc)
    return code
