"""Throughput: `logknock replay` against baselines measured in the same run.

Two logs in each format: 1,000,000 lines with 1% knock lines (a busy
server's log, mostly lines that are not ours) and 200,000 lines with 50%
(a log under a knock storm). On each, the same job is timed as:

- `logknock replay --json` (the whole command: start-up, config, pack, scan);
- simple: bench/simple_impl.py, the simplest honest Python implementation
  (read lines, a substring test, one regex, a dict);
- grep: `LC_ALL=C grep -cE` counting the same line shape (no tracking at all);
- fail2ban-regex with an equivalent filter, when installed (1 run: it is slow).

Goals: on the 1% log, logknock at most half the simple implementation's time
and at most 4x grep's; on the 50% log, no slower than the simple one.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure as m

CONFIG = m.CONFIGS / "throughput.yaml"
Case = tuple[str, int, float, dict[str, float]]
Baselines = dict[str, float | None]
# (name, lines, knock share, goals: baseline -> the most logknock may take, as a ratio)
CASES: tuple[Case, ...] = (
    ("1%", 1_000_000, 0.01, {"simple": 0.5, "grep": 4.0}),
    ("50%", 200_000, 0.50, {"simple": 1.0}),
)
PREFIX = "logknock: "
GREP_SHAPE = (
    r'(kernel: (\[ *[0-9.]+\] )?|"MESSAGE":")'
    + re.escape(PREFIX).replace(r"\ ", " ")
    + r"IN=[^ ]* OUT=[^ ]* .*SRC=[^ ]+ DST=[^ ]+ .*PROTO=(TCP|UDP) SPT=[0-9]+ DPT=[0-9]+ "
)
F2B_SHAPE = r"IN=\S* OUT=\S* .*?SRC=<HOST> DST=\S+ .*?PROTO=(?:TCP|UDP) SPT=\d+ DPT=\d+ "
F2B_RULE = {
    "journal": ('"__REALTIME_TIMESTAMP":"{LEPOCH}"', '"MESSAGE":"' + PREFIX + F2B_SHAPE),
    "syslog": (None, r"kernel: (?:\[ *[\d.]+\] )?" + PREFIX + F2B_SHAPE),
}
HEADER = ("log", "command", "lines", "seconds", "cpu s", "lines/s", "x simple", "x grep",
          "x fail2ban", "goal met", "correct")  # fmt: skip


def grep(log: Path, repeat: int) -> m.Run:
    env = {"LC_ALL": "C", "PATH": "/usr/bin:/bin"}
    return m.best(["grep", "-cE", GREP_SHAPE, str(log)], repeat, env)


def fail2ban(log: Path, fmt: str) -> m.Run | None:
    if not m.have("fail2ban-regex"):
        return None
    datepattern, rule = F2B_RULE["journal" if fmt == "journal" else "syslog"]
    options = ["--datepattern", datepattern] if datepattern else []
    return m.run(["fail2ban-regex", *options, str(log), rule])


def f2b_matched(run: m.Run) -> int:
    found = re.search(r"Lines: \d+ lines, \d+ ignored, (\d+) matched", run.stdout)
    return int(found[1]) if found else -1


def loop_seconds(run: m.Run) -> str:
    """The replay loop alone, as logknock's own summary says (no start-up)."""
    found = re.search(r"lines in ([0-9.]+)s", run.stderr)
    return found[1] if found else "?"


def measure_case(
    fmt: str, case: Case, args: argparse.Namespace
) -> tuple[list[list[object]], list[str]]:
    name, lines, share, goals = case
    lines = lines // 10 if args.quick else lines
    options = f"--lines {lines} --knocks {share} --format {fmt} --seed {args.seed}".split()
    log, expected = m.ensure_log(f"throughput-{name.rstrip('%')}-{fmt}-{lines}", CONFIG,
                                 args.workdir, *options)  # fmt: skip
    repeat = 1 if args.quick else args.repeat
    mine = m.replay(CONFIG, log, repeat)
    simple = m.best(
        [sys.executable, str(m.BENCH / "simple_impl.py"), str(CONFIG), str(log)], repeat
    )
    counted = grep(log, repeat)
    f2b = fail2ban(log, fmt) if args.fail2ban in (fmt, "all") else None
    base: Baselines = {"simple": simple.seconds, "grep": counted.seconds}
    base["fail2ban"] = f2b.seconds if f2b else None
    label = f"{name} {fmt}"
    rows = [
        _row(label, "logknock replay", lines, mine, base, _goals(mine.seconds, base, goals),
             m.verdict(m.replay_openings(mine.stdout), expected["openings"])),
        _row(label, "simple_impl.py", lines, simple, base, "",
             m.verdict(m.simple_openings(simple.stdout), expected["openings"])),
        _row(label, "grep -cE", lines, counted, base, "",
             _count(int(counted.stdout), expected["prefix_lines"])),
    ]  # fmt: skip
    if f2b is not None:
        rows.append(_row(label, "fail2ban-regex", lines, f2b, base, "",
                         _count(f2b_matched(f2b), expected["prefix_lines"])))  # fmt: skip
    notes = [f"{label}: replay loop {loop_seconds(mine)}s of {mine.seconds:.2f}s, "
             f"peak RSS {m.mib(mine.max_rss)} MiB; {expected['knock_lines']} lines with our "
             f"prefix, items {expected['items']}"]  # fmt: skip
    return rows, notes


def _row(
    label: str, command: str, lines: int, run: m.Run, base: Baselines, goal: str, correct: str
) -> list[object]:
    ratios = [m.ratio(run.seconds, base[k]) for k in ("simple", "grep", "fail2ban")]
    return [label, command, f"{lines:,}", f"{run.seconds:.3f}", f"{run.cpu:.2f}",
            m.rate(lines, run.seconds), *ratios, goal, correct]  # fmt: skip


def _goals(seconds: float, base: Baselines, goals: dict[str, float]) -> str:
    verdicts = []
    for name, limit in goals.items():
        other = base[name]
        ok = other is not None and seconds <= limit * other
        verdicts.append(f"{'yes' if ok else 'NO'} (<={limit:g}x {name})")
    return ", ".join(verdicts)


def _count(got: int, want: object) -> str:
    return f"{'yes' if got == want else 'NO'} {got}/{want} lines"


def main(argv: list[str] | None = None) -> int:
    parser = m.common_args(__doc__.split("\n\n")[0])
    parser.add_argument("--formats", default="rfc3339,traditional,journal")
    parser.add_argument("--fail2ban", default="rfc3339", help="format to run it on, all, none")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rows, notes = [], []
    for case in CASES:
        for fmt in args.formats.split(","):
            got_rows, got_notes = measure_case(fmt, case, args)
            rows += got_rows
            notes += got_notes
    print(m.table("Throughput: logknock replay and baselines on the same logs", HEADER, rows))
    startup = m.best([*m.logknock(), "--version"], args.repeat)
    notes.append(f"logknock start-up alone (logknock --version): {startup.seconds:.3f}s")
    if not m.have("fail2ban-regex"):
        notes.append(
            "fail2ban-regex is not installed: no fail2ban column (apt-get install fail2ban)"
        )
    print("\n".join(notes))
    return 1 if any(str(row[-1]).startswith("NO") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
