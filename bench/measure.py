"""What the benchmarks share: running a command and measuring it, correctness, tables.

Every command runs as a child process with its output going to files, so its
wall time and peak RSS (`os.wait4`'s rusage of that one child) are measured
the same way for logknock and for each baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CONFIGS = BENCH / "configs"
WORKDIR = Path(os.environ.get("LOGKNOCK_BENCH_DIR", Path(tempfile.gettempdir()) / "logknock-bench"))
MIB = 1 << 20


@dataclass(frozen=True)
class Run:
    seconds: float
    max_rss: int  # bytes, the child's peak resident set
    cpu: float  # user + system seconds of the child
    code: int
    stdout: str
    stderr: str


def logknock() -> list[str]:
    """The `logknock` command of the interpreter running the benchmark (the venv's)."""
    exe = Path(sys.executable).with_name("logknock")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "logknock"]


TIME = "/usr/bin/time"  # GNU time: the child's own peak RSS
QUICK = 2.0  # a command faster than this many seconds is run `repeat` times


def run(argv: Sequence[str], env: dict[str, str] | None = None) -> Run:
    """Run `argv` once: wall time from start to exit, and its peak RSS.

    The peak RSS comes from GNU time, which forks the command from its own
    small process: a child forked from this Python process would report at
    least this process's RSS (Linux keeps the peak of the memory it forked
    from across exec). Without GNU time, wait4's figure is that upper bound.
    """
    with tempfile.NamedTemporaryFile() as rss, tempfile.TemporaryFile() as out:
        wrapper = [TIME, "-q", "-f", "%M %U %S", "-o", rss.name] if Path(TIME).exists() else []
        with tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            proc = subprocess.Popen([*wrapper, *argv], stdout=out, stderr=err, env=env)
            _pid, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            err.seek(0)
            errors = err.read().decode(errors="replace")
        out.seek(0)
        text = out.read().decode(errors="replace")
        kib, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
        if wrapper and (measured := Path(rss.name).read_text().split()):
            kib, cpu = int(measured[0]), float(measured[1]) + float(measured[2])
        return Run(seconds, kib * 1024, cpu, proc.returncode, text, errors)


def best(argv: Sequence[str], repeat: int, env: dict[str, str] | None = None) -> Run:
    """The fastest of `repeat` runs for quick commands (the others only add this
    machine's noise), one run for slow ones; any failure stops the benchmark."""
    runs = [run(argv, env)]
    if runs[0].seconds < QUICK:
        runs += [run(argv, env) for _ in range(repeat - 1)]
    for r in runs:
        if r.code != 0:
            raise SystemExit(f"{argv[0]} failed ({r.code}):\n{r.stderr[-2000:]}")
    return min(runs, key=lambda r: r.seconds)


def ensure_log(
    name: str, config: Path, workdir: Path, *options: str
) -> tuple[Path, dict[str, Any]]:
    """The log `name` made by genlog.py (in its own process, so that this one stays
    small) unless an identical one is there already, and its expectation."""
    log = workdir / f"{name}.log"
    argv = [sys.executable, str(BENCH / "genlog.py"), str(log), "--config", str(config)]
    made = run([*argv, "--reuse", *options])
    if made.code != 0:
        raise SystemExit(f"genlog.py failed:\n{made.stderr[-2000:]}")
    expected = log.with_name(log.name.removesuffix(".log") + ".expected.json")
    return log, json.loads(expected.read_text())


def replay(config: Path, log: Path, repeat: int = 1) -> Run:
    return best([*logknock(), "replay", "--json", "--config", str(config), str(log)], repeat)


def replay_openings(stdout: str) -> Counter[str]:
    """'SEQUENCE SRC' of every open decision `replay --json` printed."""
    decisions = (json.loads(line) for line in stdout.splitlines() if line.strip())
    return Counter(f"{d['sequence']} {d['src']}" for d in decisions if d["action"] == "open")


def simple_openings(stdout: str) -> Counter[str]:
    return Counter(
        line.split(" ", 1)[1] for line in stdout.splitlines() if line.startswith("open ")
    )


def verdict(found: Counter[str], expected: Iterable[str]) -> str:
    want = Counter(expected)
    if found == want:
        return f"yes {sum(found.values())}/{sum(want.values())}"
    missing, extra = sum((want - found).values()), sum((found - want).values())
    return f"NO: {missing} missing, {extra} extra"


def have(program: str) -> bool:
    return shutil.which(program) is not None


def rate(lines: int, seconds: float) -> str:
    return f"{lines / seconds:,.0f}" if seconds > 0 else "-"


def mib(size: int) -> str:
    return f"{size / MIB:.1f}"


def ratio(mine: float, other: float | None) -> str:
    return "-" if not other else f"{mine / other:.2f}"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with right-aligned numbers, as the scripts print."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [title, ""]
    for n, row in enumerate(cells):
        lines.append("  ".join(_cell(text, widths[i], i) for i, text in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def _cell(text: str, width: int, column: int) -> str:
    numeric = text[:1].isdigit() or (text[:1] == "-" and text[1:2].isdigit())
    return text.rjust(width) if numeric and column > 0 else text.ljust(width)


def byte_compile() -> None:
    """Byte-compile logknock as an installed package is (dh_python3, pip): where
    PYTHONDONTWRITEBYTECODE is set, an edited module would be compiled again at
    every start and its time counted as logknock's."""
    import compileall

    import logknock

    compileall.compile_dir(Path(logknock.__file__).parent, quiet=1)


def common_args(description: str) -> argparse.ArgumentParser:
    byte_compile()  # every benchmark starts here
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workdir", type=Path, default=WORKDIR, help="where the logs are kept")
    parser.add_argument("--repeat", type=int, default=3, help="runs per command; the best counts")
    parser.add_argument("--quick", action="store_true", help="smaller logs, one run each")
    return parser
