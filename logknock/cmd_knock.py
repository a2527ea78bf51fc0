"""`logknock knock`: send a knock sequence, from the command line or a client config.

    logknock knock server.example 7000/udp 8000/udp 9000/tcp --delay 200ms
    logknock knock --sequence ssh [--config ~/.config/logknock/client.yaml]

Exit 0 when every knock was sent, 1 when some were not (or the host does not
resolve), 2 for a usage or configuration error. docs/client.md has the details.
Also runnable as `python -m logknock.cmd_knock`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

from .client import Sent, claim_one_time, parse_cli_step, read_payload, resolve
from .client import send_sequence as send
from .client_config import ClientSequence, default_path, load_client
from .config_reader import suggest
from .durations import format_duration, parse_duration
from .errors import EXIT_FAILURE, EXIT_OK, UsageError
from .schema import Step
from .totp import counter_at, totp_steps

DEFAULT_DELAY = 0.2
SERVER_DUPLICATE_WINDOW = 1.0  # the server's default duplicate_window
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Plan:
    """What one run knocks: where, which steps, how."""

    host: str
    family: int | None
    delay: float
    payload: bytes
    sequence: ClientSequence | None = None  # None: the steps came from the command line
    steps: tuple[Step, ...] = ()  # from the command line or a `knock:` list


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "knock",
        help="send a knock sequence (no root needed)",
        description="Send each knock in order: a UDP datagram or a single TCP SYN. "
        "Exit 0 when all were sent, 1 when some were not, 2 on a usage or config error.",
    )
    add_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", nargs="?", help="the host to knock (not with --sequence)")
    parser.add_argument(
        "steps", nargs="*", metavar="STEP", help="PORT/PROTO, like 7000/udp or 9000/tcp"
    )
    family = parser.add_mutually_exclusive_group()
    family.add_argument("-4", dest="family", action="store_const", const=4, help="IPv4 only")
    family.add_argument("-6", dest="family", action="store_const", const=6, help="IPv6 only")
    parser.add_argument(
        "--delay", type=_delay, metavar="DURATION", help="pause between knocks (default 200ms)"
    )
    parser.add_argument(
        "--payload", metavar="TEXT|@FILE", help="what UDP knocks carry (default: nothing)"
    )
    parser.add_argument("--sequence", "-s", metavar="NAME", help="knock a sequence of --config")
    parser.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        help=f"the client configuration (default {default_path()})",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="say what is sent where")
    parser.set_defaults(func=run)


def _delay(text: str) -> float:
    """A duration with a unit: knockd's `-d 200` means milliseconds, ours would be seconds."""
    if re.fullmatch(r"\d+(?:\.\d+)?", text.strip()) and float(text) != 0:
        raise argparse.ArgumentTypeError(f"'{text}' needs a unit, like 200ms or 1s")
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    plan = _plan(args)
    target = resolve(plan.host, plan.family)
    steps = _steps(plan, args.verbose)  # after resolving: a failed lookup burns no line
    _warn_repeats(steps, plan.delay)
    if args.verbose:
        shown = f" ({target.host})" if target.host != target.address else ""
        print(f"logknock: knocking {target.address}{shown}: {_describe(steps, plan.delay)}")
    sent = send(target, steps, delay=plan.delay, payload=plan.payload, report=_reporter(args))
    return EXIT_OK if all(s.error is None for s in sent) else EXIT_FAILURE


def _plan(args: argparse.Namespace) -> Plan:
    payload = read_payload(args.payload) if args.payload is not None else None
    if args.sequence is None:
        if args.config is not None:
            raise UsageError("--config needs --sequence NAME")
        return _plan_from_words(args.host, args.steps, args, payload)
    if args.host is not None:
        raise UsageError("give either --sequence or HOST STEP..., not both")
    sequence = _configured(args.sequence, args.config or default_path())
    return Plan(
        host=sequence.host.address,
        family=args.family or sequence.host.family,
        delay=_first(args.delay, sequence.delay, DEFAULT_DELAY),
        payload=_first(payload, sequence.payload, b""),
        sequence=sequence,
        steps=sequence.knock,
    )


def _plan_from_words(
    host: str | None, words: list[str], args: argparse.Namespace, payload: bytes | None
) -> Plan:
    if host is None or not words:
        raise UsageError("name a HOST and at least one STEP, or give --sequence NAME")
    steps = []
    for word in words:
        try:
            steps.append(parse_cli_step(word))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    delay = _first(args.delay, None, DEFAULT_DELAY)
    return Plan(host, args.family, delay, payload or b"", steps=tuple(steps))


def _first(given: T | None, configured: T | None, default: T) -> T:
    return given if given is not None else configured if configured is not None else default


def _configured(name: str, path: str) -> ClientSequence:
    config = load_client(path)
    sequence = config.sequence(name)
    if sequence is None:
        hint = suggest(name, [s.name for s in config.sequences])
        raise UsageError(f"{path} has no sequence '{name}'{hint}")
    return sequence


def _steps(plan: Plan, verbose: bool) -> tuple[Step, ...]:
    """The steps to send now: fixed, this period's TOTP ports, or a fresh one-time line."""
    sequence = plan.sequence
    if sequence is None or sequence.knock:
        return plan.steps
    if sequence.totp is not None:
        _warn_loose(sequence.totp.secret_file)
        counter = counter_at(sequence.totp, time.time())
        if verbose:
            print(f"logknock: TOTP period {counter} of {sequence.name}")
        return totp_steps(sequence.totp, counter)
    assert sequence.one_time_file is not None  # the config gives each sequence one kind
    _warn_loose(sequence.one_time_file)
    claim = claim_one_time(sequence.one_time_file)
    if verbose:
        print(f"logknock: using line {claim.line} of {sequence.one_time_file}, now marked used")
    return claim.steps


def _warn_loose(path: str) -> None:
    """Like ssh with a private key: say so when others may read a secret."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # reading it reports the problem
    if mode & 0o077:
        print(f"logknock: warning: {path} is readable by others: chmod 600 it", file=sys.stderr)


def _warn_repeats(steps: Sequence[Step], delay: float) -> None:
    """The server takes a repeat of the step just matched, within 1s, as one knock."""
    repeated = [a for a, b in pairwise(steps) if (a.port, a.proto) == (b.port, b.proto)]
    if repeated and delay <= SERVER_DUPLICATE_WINDOW:
        print(
            f"logknock: warning: {repeated[0]} twice in a row: the server counts the repeat "
            "only with a --delay longer than its duplicate_window (default 1s)",
            file=sys.stderr,
        )


def _describe(steps: Sequence[Step], delay: float) -> str:
    text = " ".join(str(step) for step in steps)
    return f"{text}, {format_duration(delay)} apart" if len(steps) > 1 else text


def _reporter(args: argparse.Namespace) -> Callable[[Sent], None]:
    def report(sent: Sent) -> None:
        if sent.error is not None:
            print(f"logknock: {sent.step}: not sent: {sent.error}", file=sys.stderr)
        elif args.verbose:
            print(f"logknock: {sent.step} sent")

    return report


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m logknock.cmd_knock ...`: the command on its own."""
    from .cli import run_command

    parser = argparse.ArgumentParser(prog="logknock knock")
    add_arguments(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
