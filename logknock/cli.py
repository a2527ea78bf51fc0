"""The command line: builds the parser from each command module, runs one
command, and maps any failure to an exit code in one place.

Each command module has `register(subparsers)`, which adds its parser and sets
`func` to a callable taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from . import __version__
from .errors import LogknockError, exit_code_for

# Command name -> the module that registers it, in help order. Only the module
# of the command being run is imported, so `replay` does not pay for `sh` or
# the firewall renderer at start-up; `--help` imports them all.
COMMANDS = {
    "run": "cmd_run",
    "check": "cmd_check",
    "replay": "cmd_replay",
    "status": "cmd_control",
    "open": "cmd_control",
    "close": "cmd_control",
    "knock": "cmd_knock",
    "firewall": "cmd_firewall",
    "import-knockd": "cmd_import",
    "demo": "cmd_demo",
    "patterns": "cmd_patterns",
}


def command_modules(argv: Sequence[str] | None = None) -> list[ModuleType]:
    """The modules to register: the named command's only, or all of them."""
    wanted = next((w for w in argv or () if not w.startswith("-")), None)
    names = [COMMANDS[wanted]] if wanted in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    return [importlib.import_module(f"{__package__}.{name}") for name in names]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logknock",
        description="Port knocking driven by the kernel's firewall log.",
    )
    parser.add_argument("--version", action="version", version=f"logknock {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in command_modules(argv):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    return run_command(build_parser(words).parse_args(words))


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
