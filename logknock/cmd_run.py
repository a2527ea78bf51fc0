"""`logknock run`: the daemon in the foreground (systemd runs it as Type=notify)."""

from __future__ import annotations

import argparse
from typing import Any

from .config_path import DEFAULT_PATH


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="run the daemon in the foreground")
    parser.add_argument("--config", "-c", default=DEFAULT_PATH, metavar="PATH")
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .daemon import Daemon  # the daemon pulls in systemd and watchdog
    from .service import setup_logging

    setup_logging(args.verbose)
    return Daemon(args.config).run()
