"""`logknock status|open|close`: ask the running daemon over its control socket."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .config import DEFAULT_PATH, load
from .control import ControlError, call
from .durations import parse_duration
from .errors import LogknockError

DEFAULT_SOCKET = "/run/logknock/control"


def register(subparsers: Any) -> None:
    status = subparsers.add_parser("status", help="grants, bans, counters of the running daemon")
    _common(status)
    status.set_defaults(func=run_status)
    opener = subparsers.add_parser("open", help="open a sequence's ports for an address by hand")
    opener.add_argument("src", help="the address to open for")
    opener.add_argument("--sequence", "-s", required=True)
    opener.add_argument(
        "--for", dest="duration", help="how long (default: the sequence's open_for)"
    )
    _common(opener)
    opener.set_defaults(func=run_open)
    closer = subparsers.add_parser("close", help="close an address's grants by hand")
    closer.add_argument("src")
    closer.add_argument("--sequence", "-s", help="only this sequence's grant")
    _common(closer)
    closer.set_defaults(func=run_close)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--socket", help=f"control socket (default: from the config, {DEFAULT_SOCKET})"
    )
    parser.add_argument("--config", "-c", default=DEFAULT_PATH, metavar="PATH")
    parser.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")


def _socket(args: argparse.Namespace) -> str:
    if args.socket:
        return str(args.socket)
    try:  # a broken or unreadable config must not hide the daemon's socket
        return load(args.config).control_socket
    except (LogknockError, OSError):
        return DEFAULT_SOCKET


def _ask(args: argparse.Namespace, body: dict[str, Any]) -> dict[str, Any]:
    answer = call(_socket(args), body)
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "the daemon refused the request")))
    return answer


def run_status(args: argparse.Namespace) -> int:
    answer = _ask(args, {"cmd": "status"})
    print(json.dumps(answer, indent=2) if args.json else _status_text(answer))
    return 0


def run_open(args: argparse.Namespace) -> int:
    body = {"cmd": "open", "src": args.src, "sequence": args.sequence}
    if args.duration:
        body["for"] = parse_duration(args.duration)
    return _print_decisions(args, _ask(args, body))


def run_close(args: argparse.Namespace) -> int:
    body = {"cmd": "close", "src": args.src, "sequence": args.sequence}
    return _print_decisions(args, _ask(args, body))


def _print_decisions(args: argparse.Namespace, answer: dict[str, Any]) -> int:
    decisions = answer.get("decisions", [])
    if args.json:
        print(json.dumps(answer, indent=2))
    for d in [] if args.json else decisions:
        print(f"{d['action']} {d['src']} {d.get('sequence') or ''} {' '.join(d.get('ports', []))}")
    if not decisions and not args.json:
        print("nothing to do")
    return 0


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def _status_text(s: dict[str, Any]) -> str:
    lines = [f"logknock pid {s['pid']}, up {s['uptime']:.0f}s, config {s['config']}"]
    lines.append(f"grants ({len(s['grants'])}):")
    lines += [
        f"  {g['src']} {g['sequence']} {' '.join(g['ports'])} "
        f"{g['remaining']:.0f}s left (until {_clock(g['expires'])})"
        for g in s["grants"]
    ]
    lines.append(f"bans ({len(s['bans'])}):")
    lines += [f"  {b['src']} until {_clock(b['until'])}" for b in s["bans"]]
    lines.append(f"tracked sources: {s['tracked']}")
    lines += [_source_text(name, c) for name, c in s["sources"].items()]
    hooks = s["hooks"]
    lines.append(
        f"decisions: {s['decisions']}; hook failures: {hooks['failures']}, "
        f"pending: {len(hooks['pending'])}"
    )
    if s["drift"]["count"]:
        lines.append(
            f"FORMAT DRIFT: {s['drift']['count']} lines with our prefix did not parse; "
            f"last: {s['drift']['last_line']}"
        )
    return "\n".join(lines)


def _source_text(name: str, c: dict[str, Any]) -> str:
    failure = f", FAILING: {c['failure']}" if c.get("failure") else ""
    return (
        f"source {name}: {c.get('lines', 0)} lines, {c.get('prefix_hits', 0)} with our prefix, "
        f"{c.get('parsed', 0)} parsed, {c.get('knocks', 0)} knocks, "
        f"drift {c.get('drift', 0)}{failure}"
    )
