"""A seeded generator of realistic logs with knock sequences and decoys.

Two shapes:

- mixed (`--lines N --knocks F`): a server's log of N lines. A fraction F
  are lines with our prefix: complete valid sequences from distinct IPv4 and
  IPv6 sources, and decoys that must open nothing (incomplete, wrong
  protocol, wrong order, too slow, logged under a foreign prefix that
  contains ours, single scanner hits). `--foreign` of the lines are other
  firewall rules' LOG lines (ufw, firewalld), the rest ordinary noise
  (sshd, cron, systemd, kernel chatter).
- flood (`--flood N --real R`): N distinct spoofed sources each send one
  first-step knock within `--window` seconds, with R real sequences mixed in.

Every source sends one item only, so items never interfere. The expected
openings, (sequence, source) pairs, are written beside the log as
NAME.expected.json, so every benchmark run checks correctness too. The same
arguments and seed always give the same bytes.

    python bench/genlog.py OUT.log --config bench/configs/throughput.yaml \
        --lines 1000000 --knocks 0.01
"""

from __future__ import annotations

import argparse
import calendar
import ipaddress
import json
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lines import FORMATS, Envelope, Packets, noise

from logknock import config as config_loader

VERSION = 2  # bump when the output for the same Spec changes: cached logs are remade
START = calendar.timegm((2026, 6, 15, 0, 0, 0))  # mid-June: no DST change, no new year
DECOYS = ("incomplete", "wrong-proto", "wrong-order", "too-slow", "foreign-prefix", "scan")
# Shares of a mixed log's knock lines, by item kind.
WEIGHTS = {"valid": 40, "incomplete": 10, "wrong-proto": 8, "wrong-order": 8, "too-slow": 8}
WEIGHTS |= {"foreign-prefix": 8, "scan": 18}
V4_BASE, V4_SIZE = int(ipaddress.IPv4Address("198.18.0.0")), 1 << 17
V6_NET = int(ipaddress.IPv6Address("2001:db8::"))
OUR_PREFIX = "logknock: "

Steps = tuple[tuple[str, int], ...]  # (proto, port) of each step


@dataclass(frozen=True)
class Spec:
    lines: int = 0
    knocks: float = 0.01
    foreign: float = 0.10
    fmt: str = "rfc3339"
    seed: int = 1
    duration: float = 86400.0
    flood: int = 0
    real: int = 0
    window: float = 10.0
    v6_share: float = 0.3  # of the knocking sources


@dataclass
class Item:
    """One source's knock lines: (time, proto, port, prefix) each."""

    src: str
    knocks: list[tuple[float, str, int, str]]
    kind: str
    sequence: str | None = None  # the sequence it opens, for valid items


class Sources:
    """Distinct addresses as the kernel prints them (IPv6 uncompressed): IPv4 from
    198.18.0.0/15 while it lasts, else IPv6 from 2001:db8::/32."""

    def __init__(self, rng: random.Random, v6_share: float) -> None:
        self.rng, self.v6_share = rng, v6_share
        self._v4 = 2  # .0.0 is the network, .0.1 the server
        self._v6 = 1

    def next(self) -> str:
        if self._v4 < V4_SIZE and self.rng.random() >= self.v6_share:
            self._v4 += 1
            # an odd multiplier permutes the /15, so neighbours are not in a row
            return str(ipaddress.IPv4Address(V4_BASE + (self._v4 * 40503) % V4_SIZE))
        self._v6 += 1
        low = self.rng.getrandbits(64) | 1
        return ipaddress.IPv6Address(V6_NET | (self._v6 << 64) | low).exploded


class Items:
    """Builds valid sequences and decoys for the configured sequences."""

    def __init__(self, rng: random.Random, sources: Sources, sequences: dict[str, Steps]):
        self.rng, self.sources, self.sequences = rng, sources, sequences
        self.names = sorted(sequences)
        self.ports = sorted({step for steps in sequences.values() for step in steps})

    def make(self, kind: str, at: float) -> Item:
        name = self.rng.choice(self.names)
        steps = list(self.sequences[name])
        item: Item = getattr(self, "_" + kind.replace("-", "_"))(steps, at)
        if kind == "valid":
            item.sequence = name
        return item

    def _times(self, count: int, at: float, slow: int | None = None) -> list[float]:
        """Client-like gaps of a few milliseconds; `slow`: the gap before that step is 7-20s."""
        times = [at]
        for n in range(1, count):
            gap = self.rng.uniform(7.0, 20.0) if n == slow else self.rng.uniform(0.002, 0.05)
            times.append(times[-1] + gap)
        return times

    def _item(
        self, kind: str, steps: list[tuple[str, int]], times: list[float], prefix: str
    ) -> Item:
        knocks = [(t, proto, port, prefix) for t, (proto, port) in zip(times, steps, strict=True)]
        return Item(self.sources.next(), knocks, kind)

    def _valid(self, steps: list[tuple[str, int]], at: float) -> Item:
        item = self._item("valid", steps, self._times(len(steps), at), OUR_PREFIX)
        if self.rng.random() < 0.1:  # a retransmitted knock: a duplicate, ignored
            n = self.rng.randrange(len(steps))
            t, proto, port, prefix = item.knocks[n]
            item.knocks.insert(n + 1, (t + self.rng.uniform(0.001, 0.4), proto, port, prefix))
            item.knocks[n + 2 :] = [(k[0] + 0.4, *k[1:]) for k in item.knocks[n + 2 :]]
        return item

    def _incomplete(self, steps: list[tuple[str, int]], at: float) -> Item:
        steps = steps[: self.rng.randrange(1, len(steps))]
        return self._item("incomplete", steps, self._times(len(steps), at), OUR_PREFIX)

    def _wrong_proto(self, steps: list[tuple[str, int]], at: float) -> Item:
        n = self.rng.randrange(len(steps))
        proto, port = steps[n]
        steps[n] = ("udp" if proto == "tcp" else "tcp", port)
        return self._item("wrong-proto", steps, self._times(len(steps), at), OUR_PREFIX)

    def _wrong_order(self, steps: list[tuple[str, int]], at: float) -> Item:
        wrong = steps[:]
        while wrong == steps:
            self.rng.shuffle(wrong)
        return self._item("wrong-order", wrong, self._times(len(steps), at), OUR_PREFIX)

    def _too_slow(self, steps: list[tuple[str, int]], at: float) -> Item:
        times = self._times(len(steps), at, slow=self.rng.randrange(1, len(steps)))
        return self._item("too-slow", steps, times, OUR_PREFIX)

    def _foreign_prefix(self, steps: list[tuple[str, int]], at: float) -> Item:
        prefix = self.rng.choice(("x" + OUR_PREFIX, "[UFW BLOCK] " + OUR_PREFIX))
        return self._item("foreign-prefix", steps, self._times(len(steps), at), prefix)

    def _scan(self, _steps: list[tuple[str, int]], at: float) -> Item:
        """A scanner's single hit on one knock port."""
        return self._item("scan", [self.rng.choice(self.ports)], [at], OUR_PREFIX)


def read_sequences(path: str) -> tuple[str, dict[str, Steps]]:
    """The prefix and the `knock:` sequences of a logknock configuration."""
    config = config_loader.load(path)
    sequences = {
        s.name: tuple((step.proto, step.port) for step in s.knock)
        for s in config.sequences
        if s.knock and not s.closes
    }
    return config.prefix, sequences


def mixed_items(spec: Spec, items: Items) -> list[Item]:
    """Items until the knock-line budget is used up (the last ones single scanner hits)."""
    budget, out = round(spec.lines * spec.knocks), []
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    while budget > 0:
        kind = items.rng.choices(kinds, weights)[0]
        item = items.make(kind, START + items.rng.uniform(0, spec.duration - 60))
        if len(item.knocks) > budget:
            item = items.make("scan", item.knocks[0][0])
        out.append(item)
        budget -= len(item.knocks)
    return out


def flood_items(spec: Spec, items: Items) -> list[Item]:
    """`flood` first steps of random sequences within `window`, `real` valid sequences."""
    firsts = [steps[0] for steps in items.sequences.values()]
    out = []
    for _ in range(spec.flood):
        proto, port = items.rng.choice(firsts)
        at = START + items.rng.uniform(0, spec.window)
        out.append(Item(items.sources.next(), [(at, proto, port, OUR_PREFIX)], "flood"))
    for _ in range(spec.real):
        out.append(items.make("valid", START + items.rng.uniform(0, spec.window - 1)))
    return out


def timeline(
    spec: Spec, items: list[Item], rng: random.Random
) -> list[tuple[float, int, str, str]]:
    """Every line as (time, order, tag, message), sorted by time."""
    packets, events = Packets(rng), list[tuple[float, int, str, str]]()
    for item in items:
        for at, proto, port, prefix in item.knocks:
            events.append(
                (at, len(events), "kernel", packets.message(prefix, item.src, proto, port))
            )
    others = max(0, spec.lines - len(events)) if not spec.flood else 0
    peers = [Sources(rng, 0.3).next() for _ in range(256)]
    for _ in range(others):
        at = START + rng.uniform(0, spec.duration)
        if rng.random() * (1 - spec.knocks) < spec.foreign:
            events.append((at, len(events), "kernel", packets.foreign(rng.choice(peers))))
        else:
            events.append((at, len(events), *noise(rng, peers)))
    events.sort()
    return events


def generate(path: Path, spec: Spec, config: str) -> dict[str, Any]:
    """Write the log to `path` and its expectation beside it; return the expectation."""
    prefix, sequences = read_sequences(config)
    if prefix != OUR_PREFIX:
        raise SystemExit(f"genlog writes the prefix {OUR_PREFIX!r}; {config} has {prefix!r}")
    rng = random.Random(spec.seed)
    items = Items(rng, Sources(rng, spec.v6_share), sequences)
    chosen = flood_items(spec, items) if spec.flood else mixed_items(spec, items)
    events = timeline(spec, chosen, rng)
    envelope = Envelope(spec.fmt, START)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.writelines(envelope.line(at, tag, message) + "\n" for at, _n, tag, message in events)
    expected = expectation(spec, config, chosen, len(events))
    expected_path(path).write_text(json.dumps(expected, indent=1) + "\n")
    return expected


def expectation(spec: Spec, config: str, items: list[Item], lines: int) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for item in items:
        kinds[item.kind] = kinds.get(item.kind, 0) + 1
    openings = sorted(
        f"{item.sequence} {ipaddress.ip_address(item.src)}" for item in items if item.sequence
    )
    return {
        "genlog": VERSION,
        "spec": asdict(spec),
        "config": str(Path(config).resolve()),
        "lines": lines,
        "knock_lines": sum(len(item.knocks) for item in items),
        # lines with exactly our prefix (the foreign-prefix decoys only contain it)
        "prefix_lines": sum(len(i.knocks) for i in items if i.kind != "foreign-prefix"),
        "items": kinds,
        "openings": openings,
    }


def expected_path(log: Path) -> Path:
    return log.with_name(log.name.removesuffix(".log") + ".expected.json")


def ensure(path: Path, spec: Spec, config: str) -> dict[str, Any]:
    """The log at `path` for `spec`, generated unless an identical one is already there."""
    try:
        expected = json.loads(expected_path(path).read_text())
        fresh = expected["genlog"] == VERSION and expected["spec"] == asdict(spec)
        if fresh and expected["config"] == str(Path(config).resolve()) and path.exists():
            return dict(expected)
    except (OSError, ValueError, KeyError):
        pass
    return generate(path, spec, config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the log to write; NAME.expected.json goes beside")
    parser.add_argument(
        "--config", required=True, help="the logknock.yaml whose sequences to knock"
    )
    parser.add_argument("--lines", type=int, default=0, help="mixed shape: lines in all")
    parser.add_argument("--knocks", type=float, default=0.01, help="share of lines with our prefix")
    parser.add_argument("--foreign", type=float, default=0.10, help="share of foreign LOG lines")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default="rfc3339")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--flood", type=int, default=0, help="flood shape: spoofed first steps")
    parser.add_argument("--real", type=int, default=0, help="flood shape: real sequences")
    parser.add_argument("--window", type=float, default=10.0, help="flood shape: seconds")
    parser.add_argument("--reuse", action="store_true", help="keep an identical log already there")
    args = parser.parse_args(argv)
    fields = {k: v for k, v in vars(args).items() if k not in ("out", "config", "reuse")}
    make = ensure if args.reuse else generate
    expected = make(args.out, Spec(**fields), args.config)
    print(
        f"{args.out}: {expected['lines']} lines, {expected['knock_lines']} with our prefix, "
        f"{len(expected['openings'])} openings expected, items {expected['items']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
