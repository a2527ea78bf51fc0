"""`logknock firewall render`: print (or load) the rules that log knocks.

    logknock firewall render [--config PATH] [--backend nft|iptables]
                             [--apply] [--no-log-closed] [--log-rate N/second]
                             [--services 22/tcp,80/tcp,...]

Without --apply the commented ruleset goes to stdout; with --apply it is
loaded (idempotent, grants kept) and one summary line is printed.
"""

from __future__ import annotations

import argparse
from typing import Any

from .config import DEFAULT_PATH, load
from .firewall import BACKENDS, Options, apply, parse_rate, parse_services, render
from .firewall_model import Plan


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("firewall", help="firewall rules that log knocks")
    sub = parser.add_subparsers(dest="firewall_command", metavar="ACTION", required=True)
    render_parser = sub.add_parser(
        "render",
        help="print or load the rules for the configured sequences",
        description="Print a commented ruleset that logs knocks (and, by default, hits on "
        "closed ports), drops them silently and accepts protected ports for granted "
        "addresses; --apply loads it. See docs/firewall.md.",
    )
    _add_arguments(render_parser)
    render_parser.set_defaults(func=run_render)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", default=DEFAULT_PATH, metavar="PATH", help=f"default: {DEFAULT_PATH}"
    )
    parser.add_argument("--backend", choices=BACKENDS, default="nft", help="default: nft")
    parser.add_argument("--apply", action="store_true", help="load the rules instead of printing")
    parser.add_argument(
        "--no-log-closed",
        dest="log_closed",
        action="store_false",
        help="do not log or drop hits on closed ports (a scan then resets no knock)",
    )
    parser.add_argument(
        "--log-rate",
        default="20/second",
        metavar="N/second",
        help="log lines per source address (IPv6: per /64), N/second or N/minute, burst 2N; "
        "default 20/second",
    )
    parser.add_argument(
        "--services",
        action="append",
        default=[],
        metavar="PORTS",
        help="public services never logged or dropped as closed ports: 80/tcp,443/tcp,...",
    )


def run_render(args: argparse.Namespace) -> int:
    config = load(args.config)
    services = tuple(port for text in args.services for port in parse_services(text))
    rate = parse_rate(args.log_rate)
    options = Options(log_closed=args.log_closed, rate=rate, services=services)
    if not args.apply:
        print(render(config, args.backend, options), end="")
        return 0
    print(_summary(args.backend, apply(config, args.backend, options)))
    return 0


def _summary(backend: str, plan: Plan) -> str:
    where = "table inet logknock" if backend == "nft" else "chains LOGKNOCK-RULES, LOGKNOCK-LOG"
    closed = "closed ports logged" if plan.log_closed else "closed ports left alone"
    return (
        f"logknock: loaded {where} ({backend}): {len(plan.knocks)} knock port range(s), "
        f"{len(plan.protected)} protected port(s), {closed}"
    )
