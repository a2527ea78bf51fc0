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

# Command name -> the module that registers it, in help order. Only the module
# of the command being run is imported, so `replay` does not pay for `sh` or
# the firewall renderer at start-up; `--help` imports them all, `--version` none.
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
    """The modules to register: the named command's only, none when only the
    version is asked for, all of them otherwise (help and errors list them)."""
    words = list(argv or ())
    wanted = next((w for w in words if not w.startswith("-")), None)
    if wanted in COMMANDS:
        names = [COMMANDS[wanted]]
    elif words and all(_asks_version(word) for word in words):
        names = []
    else:
        names = list(dict.fromkeys(COMMANDS.values()))
    return [importlib.import_module(f"{__package__}.{name}") for name in names]


def _asks_version(word: str) -> bool:
    """`--version`, or an abbreviation argparse takes for it."""
    return len(word) > 2 and "--version".startswith(word)


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
    from .errors import LogknockError, exit_code_for  # not needed for --help and --version

    try:
        code: int = args.func(args)
    except LogknockError as exc:
        print(f"logknock: {exc}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, BrokenPipeError) as exc:
        return exit_code_for(exc)
    return code
