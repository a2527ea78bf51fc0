"""`logknock demo`: see the whole path work on this kernel, safely (root)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .errors import UsageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="knock and open a port in throwaway network namespaces, narrated (root)",
        description="Builds two network namespaces, loads the rules, runs the daemon on the "
        "real kernel log, knocks, connects, waits for the close, and removes it all again.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise UsageError("the demo builds network namespaces: run it as root")
    from . import demo

    return demo.run()
