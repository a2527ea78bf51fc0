"""Scaling: replay's cost as tracked sources and configured sequences grow.

- Sources: 1k, 10k, 100k, 1M distinct sources each send a first step within
  4 seconds (all still waiting for their second step at the end, so all are
  tracked at once; `max_tracked` is 1,000,000 here), with 10 real sequences
  mixed in. Time per line should stay flat; memory grows by a fixed amount
  per tracked source.
- Sequences: 1, 10 and 100 configured sequences (distinct random ports),
  each with a 100,000-line log, half of it knock lines for those sequences.
  The per-line cost must not grow with the number of sequences.

Per-line figures use the replay loop's own time (logknock's summary line),
so the fixed start-up does not hide or inflate them.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure as m

SOURCES = (1_000, 10_000, 100_000, 1_000_000)
SEQUENCES = (1, 10, 100)
FLAT = 1.5  # per-line cost of every larger case, at most this many times the base case's
MEASURABLE = 0.5  # seconds: the base case is the first whose replay loop runs this long
HEADER = ("what", "lines", "seconds", "loop s", "lines/s", "us/line", "x base",
          "peak RSS MiB", "bytes/source", "goal met", "correct")  # fmt: skip


def loop(run: m.Run) -> float:
    found = re.search(r"lines in ([0-9.]+)s", run.stderr)
    return float(found[1]) if found else run.seconds


def sequences_config(count: int, path: Path, seed: int) -> Path:
    """`count` three-step sequences on distinct ports (none shared, so no knock of
    one sequence is a step of another)."""
    rng = random.Random(seed)
    ports = rng.sample(range(10000, 60000), 3 * count)
    lines = ['prefix: "logknock: "', "state_dir: /nonexistent/logknock-bench",
             "hooks_dir: /nonexistent/logknock-bench", "sequences:"]  # fmt: skip
    for n in range(count):
        steps = [f"{ports[3 * n + i]}/{('udp', 'tcp', 'udp')[i]}" for i in range(3)]
        lines += [f"  s{n:03d}:", f"    knock: [{', '.join(steps)}]", "    open: [22/tcp]"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def measure(label: str, config: Path, log: Path, expected: dict[str, Any]) -> list[object]:
    """One row; the ratio and goal columns are filled by `_judge`."""
    run = m.replay(config, log)
    lines, seconds = expected["lines"], loop(run)
    per_line = seconds / lines * 1e6
    return [label, f"{lines:,}", f"{run.seconds:.2f}", f"{seconds:.2f}", m.rate(lines, seconds),
            f"{per_line:.1f}", "", m.mib(run.max_rss), "-", "",
            m.verdict(m.replay_openings(run.stdout), expected["openings"])]  # fmt: skip


def by_sources(args: argparse.Namespace) -> list[list[object]]:
    """Bytes per source: the RSS above the smallest case's, per source more than it had."""
    config, rows = m.CONFIGS / "scaling.yaml", list[list[object]]()
    for n in SOURCES[:-1] if args.quick else SOURCES:
        options = f"--flood {n} --real 10 --window 4 --seed {args.seed}".split()
        log, expected = m.ensure_log(f"scaling-sources-{n}", config, args.workdir, *options)
        row = measure(f"{n:,} sources", config, log, expected)
        if rows:
            grown = (float(str(row[7])) - float(str(rows[0][7]))) * m.MIB
            row[8] = f"{grown / (n - SOURCES[0]):.0f}"
        rows.append(row)
    return _judge(rows)


def by_sequences(args: argparse.Namespace) -> list[list[object]]:
    rows: list[list[object]] = []
    lines = 20_000 if args.quick else 100_000
    for count in SEQUENCES:
        config = sequences_config(count, args.workdir / f"sequences-{count}.yaml", args.seed)
        options = f"--lines {lines} --knocks 0.5 --seed {args.seed}".split()
        log, expected = m.ensure_log(f"scaling-sequences-{count}", config, args.workdir, *options)
        label = f"{count} sequence{'s' if count > 1 else ''}"
        rows.append(measure(label, config, log, expected))
    return _judge(rows)


def _judge(rows: list[list[object]]) -> list[list[object]]:
    """Per-line cost against the first row whose loop ran long enough to time
    (0.5 s: below that, the first knocks' one-time costs dominate)."""
    base = next((r for r in rows if float(str(r[3])) >= MEASURABLE), rows[0])
    ratios = []
    for row in rows:
        ratios.append(float(str(row[5])) / float(str(base[5])))
        row[6] = f"{ratios[-1]:.2f}"
    worst = max(ratios[rows.index(base) :])
    rows[-1][9] = f"{'yes' if worst <= FLAT else 'NO'} (<= {FLAT}x {base[0]})"
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = m.common_args(__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rows = by_sources(args)
    print(
        m.table("Scaling: tracked sources (first steps within 4 s, max_tracked 1M)", HEADER, rows)
    )
    more = by_sequences(args)
    title = "Scaling: configured sequences (the same log shape, 50% knock lines)"
    print(m.table(title, HEADER, more))
    return 1 if any(str(row[-1]).startswith("NO") for row in rows + more) else 0


if __name__ == "__main__":
    sys.exit(main())
