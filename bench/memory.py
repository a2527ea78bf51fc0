"""Memory: a flood of spoofed first steps, with a few real clients inside it.

1,000,000 distinct spoofed sources each send the first step of a configured
sequence within 10 seconds; 10 real clients knock complete sequences in the
middle of it (steps milliseconds apart, as a knock client sends them). With
the default `limits.max_tracked` (100,000), `logknock replay`'s peak RSS must
stay at or under 64 MiB, and all 10 real openings must be found.

Baselines in the same run: the start-up floor (`logknock --version`: the
interpreter and logknock's imports), and the simple implementation, whose
dict keeps every source it saw.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure as m

CONFIG = m.CONFIGS / "throughput.yaml"  # default limits: max_tracked 100000
LIMIT = 64 * m.MIB
HEADER = ("command", "lines", "seconds", "lines/s", "peak RSS MiB", "x simple RSS", "goal met",
          "correct")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = m.common_args(__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    sources = args.sources // 10 if args.quick else args.sources
    options = f"--flood {sources} --real 10 --window 10 --seed {args.seed}".split()
    log, expected = m.ensure_log(f"memory-flood-{sources}", CONFIG, args.workdir, *options)
    lines = expected["lines"]
    mine = m.replay(CONFIG, log)
    simple = m.best([sys.executable, str(m.BENCH / "simple_impl.py"), str(CONFIG), str(log)], 1)
    floor = m.best([*m.logknock(), "--version"], 1)
    found = m.verdict(m.replay_openings(mine.stdout), expected["openings"])
    goal = "yes" if mine.max_rss <= LIMIT else "NO"
    rows = [
        ["logknock replay", f"{lines:,}", f"{mine.seconds:.2f}", m.rate(lines, mine.seconds),
         m.mib(mine.max_rss), m.ratio(mine.max_rss, simple.max_rss), f"{goal} (<= 64 MiB)", found],
        ["simple_impl.py", f"{lines:,}", f"{simple.seconds:.2f}", m.rate(lines, simple.seconds),
         m.mib(simple.max_rss), "1.00", "",
         m.verdict(m.simple_openings(simple.stdout), expected["openings"])],
        ["logknock --version (floor)", "-", f"{floor.seconds:.2f}", "-", m.mib(floor.max_rss),
         m.ratio(floor.max_rss, simple.max_rss), "", ""],
    ]  # fmt: skip
    title = f"Memory: {sources:,} spoofed first steps in 10 s and 10 real sequences"
    print(m.table(title, HEADER, rows))
    print(f"replay: {mine.stderr.strip().splitlines()[0]}")
    return 1 if found.startswith("NO") else 0


if __name__ == "__main__":
    sys.exit(main())
