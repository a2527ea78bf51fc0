"""knockd's One_Time_Sequences file: each line a sequence that works once.

    # comments and blank lines are ignored
    7000:udp,8000:tcp 9000
    1234:udp 2345:udp 3456:tcp

Steps are separated by commas and/or spaces; each is `port[:proto]`, the
protocol tcp when left out (knockd's rule). `port/proto` is read too. A `#`
starts a comment anywhere on a line.
"""

from __future__ import annotations

import re

from .config_values import parse_port, parse_proto
from .errors import ConfigError, Location
from .schema import Step

_TOKEN = re.compile(r"[^\s,]+")


def parse_one_time(text: str, path: str) -> tuple[tuple[Step, ...], ...]:
    """The sequences in `text`, in file order; ConfigError names each bad step's line:column."""
    problems: list[tuple[Location, str]] = []
    sequences: list[tuple[Step, ...]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        steps: list[Step] = []
        for token in _TOKEN.finditer(line.partition("#")[0]):
            try:
                steps.append(parse_token(token.group()))
            except ValueError as exc:
                problems.append((Location(path, number, token.start() + 1), str(exc)))
        if steps:
            sequences.append(tuple(steps))
    if problems:
        raise ConfigError(problems)
    return tuple(sequences)


def parse_token(token: str) -> Step:
    """One step: "7000", "7000:udp" or "7000/udp"."""
    port, _, proto = token.replace("/", ":", 1).partition(":")
    return Step(parse_port(port), parse_proto(proto or "tcp"))
