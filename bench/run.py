"""Run every benchmark and print their tables: `python bench/run.py [--quick]`.

Each benchmark runs in its own process, one after the other (they would
disturb each other's timings otherwise). The logs are generated on first use
into the work folder (default: $TMPDIR/logknock-bench, about 1 GB) and reused
while genlog's version and arguments stay the same. Exit status 1 when any
benchmark found other openings than expected; goals missed are reported in
the tables, not in the exit status.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCRIPTS = ("throughput.py", "memory.py", "scaling.py", "latency.py")


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        return 0
    started, failed = time.perf_counter(), []
    for script in SCRIPTS:
        print(f"== {script} {' '.join(argv)}".rstrip(), flush=True)
        done = subprocess.run([sys.executable, str(BENCH / script), *argv], check=False)
        if done.returncode != 0:
            failed.append(script)
        print(flush=True)
    minutes = (time.perf_counter() - started) / 60
    print(f"all benchmarks in {minutes:.1f} min; wrong openings in: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
