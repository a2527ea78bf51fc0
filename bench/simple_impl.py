"""The simplest honest Python implementation of `logknock replay`: the baseline.

Read lines, a substring test for the prefix, one regex for the timestamp and
the fields, a dict from source address to its progress. It follows the same
rules as the tracker for the logs genlog writes (step and sequence timeouts,
duplicates within `duplicate_window`, any other knock resets, TCP flags) and
prints `open SEQUENCE SRC` per opening. It checks nothing else: no trust, no
forged fields, no bounded memory, no bans, no grants closing.

    python bench/simple_impl.py CONFIG LOG
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import sys

import yaml

STAMP = (
    rb"(?:(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))"
    rb"|(?P<trad>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)"
    rb'|\{.*?"__REALTIME_TIMESTAMP":"(?P<usec>\d+)".*?"MESSAGE":")'
)
FIELDS = (
    rb"IN=\S* OUT=\S* .*?SRC=(?P<src>\S+) DST=\S+ .*?PROTO=(?P<proto>TCP|UDP) "
    rb"SPT=\d+ DPT=(?P<dpt>\d+) (?:WINDOW=\d+ RES=0x\w\w (?P<flags>(?:[A-Z]+ )*)URGP)?"
)


def steps_of(knock: list[str]) -> list[tuple[str, int, set[str], set[str]]]:
    """'6977/tcp:syn,!ack' -> ('tcp', 6977, {'SYN'}, {'ACK'})."""
    steps = []
    for text in knock:
        port, _, rest = str(text).partition("/")
        proto, _, flags = rest.partition(":")
        names = [f.upper() for f in flags.split(",") if f]
        must = {f for f in names if not f.startswith("!")}
        steps.append((proto.lower(), int(port), must, {f[1:] for f in names if f.startswith("!")}))
    return steps


class Baseline:
    """Per-source progress in a dict; `knock` returns the sequence a knock completes."""

    def __init__(self, sequences: dict[str, list[tuple[str, int, set[str], set[str]]]]):
        self.sequences = sequences
        self.firsts = {(steps[0][0], steps[0][1]): name for name, steps in sequences.items()}
        self.step_timeout, self.sequence_timeout, self.window = 5.0, 15.0, 1.0
        self.progress: dict[str, tuple[str, int, float, float]] = {}

    def knock(self, src: str, proto: str, port: int, flags: set[str], at: float) -> str | None:
        here = self.progress.pop(src, None)
        if here is not None:
            name, n, first, last = here
            steps = self.sequences[name]
            if steps[n - 1][:2] == (proto, port) and at - last <= self.window:
                self.progress[src] = here
                return None  # a retransmitted knock
            step = steps[n]
            if (
                step[:2] == (proto, port)
                and step[2] <= flags
                and not step[3] & flags
                and at - last <= self.step_timeout
                and at - first <= self.sequence_timeout
            ):
                if n + 1 == len(steps):
                    return name
                self.progress[src] = (name, n + 1, first, at)
                return None
        started = self.firsts.get((proto, port))
        if started is not None:
            step = self.sequences[started][0]
            if step[2] <= flags and not step[3] & flags:
                self.progress[src] = (started, 1, at, at)
        return None


def timestamp(m: re.Match[bytes], year: str) -> float:
    if m["iso"]:
        return dt.datetime.fromisoformat(m["iso"].decode()).timestamp()
    if m["trad"]:
        text = year + " " + m["trad"].decode()
        return dt.datetime.strptime(text, "%Y %b %d %H:%M:%S").timestamp()
    return int(m["usec"]) / 1e6


def main(config_path: str, log_path: str) -> int:
    with open(config_path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    prefix = config.get("prefix", "logknock: ").encode()
    needle = prefix.rstrip()
    kernel = rb"(?: \S+ kernel: (?:\[ *[\d.]+\] )?)?"
    line_re = re.compile(STAMP + kernel + re.escape(prefix) + FIELDS)
    sequences = {n: steps_of(s["knock"]) for n, s in config["sequences"].items() if "knock" in s}
    baseline, year = Baseline(sequences), str(dt.date.today().year)
    with open(log_path, "rb") as log:
        for line in log:
            if needle not in line:
                continue
            m = line_re.match(line)
            if m is None:
                continue
            src = str(ipaddress.ip_address(m["src"].decode()))
            flags = set((m["flags"] or b"").decode().split())
            at = timestamp(m, year)
            opened = baseline.knock(src, m["proto"].decode().lower(), int(m["dpt"]), flags, at)
            if opened:
                print(f"open {opened} {src}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
