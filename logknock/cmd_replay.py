"""`logknock replay`: recorded logs through the same matcher and tracker.

The records' own timestamps are the clock. Decisions are printed in time
order; closes are emitted for grants that expire up to the last record's time.
No hook runs unless `--run-hooks` is given. A summary goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from . import config as config_loader
from .matcher import Matcher
from .models import Decision
from .packs import load_pack
from .pipeline import Pipeline
from .sources.replay import read_files
from .tracker import Tracker


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("replay", help="run recorded logs through the tracker")
    parser.add_argument("files", nargs="+", metavar="FILE", help="log files (.gz too), - for stdin")
    parser.add_argument("--config", required=True, help="the logknock.yaml to use")
    parser.add_argument("--json", action="store_true", help="one JSON object per decision")
    parser.add_argument("--run-hooks", action="store_true", help="run the configured hooks")
    parser.add_argument(
        "--kernel-only",
        action="store_true",
        help="act only on lines that prove a kernel origin (journal JSON, kmsg records)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_loader.load(args.config)
    pack = load_pack(config.pack, config.patterns_dir)
    pipeline = Pipeline(
        Matcher(pack, config.prefix), Tracker(config), require_proof=args.kernel_only
    )
    runner = _hook_runner(config) if args.run_hooks else None
    records = read_files(
        args.files, needle=pipeline.matcher.needle, skipped=pipeline.count_lines, workers=_cpus()
    )
    gc.freeze()  # what is built so far lives to the end: the collector need not walk it again
    started = time.perf_counter()
    for record in records:
        _emit(pipeline.feed(record), args.json, runner)
    _emit(pipeline.tick(pipeline.clock), args.json, runner)
    _summary(pipeline, time.perf_counter() - started)
    return 0


def _cpus() -> int:
    """Processes to scan a large file with: the CPUs this process may use, up to 4."""
    return min(4, len(os.sched_getaffinity(0)))


def _hook_runner(config: Any) -> Any:
    from .hooks import HookRunner  # the hook runner needs `sh`; replay alone does not

    return HookRunner(config)


def _emit(decisions: list[Decision], as_json: bool, runner: Any) -> None:
    for decision in decisions:
        print(json.dumps(decision.as_json()) if as_json else _text(decision))
        if runner is not None:
            runner.run_now(decision)


def _text(decision: Decision) -> str:
    parts = [_when(decision.at), decision.action.value, str(decision.src)]
    if decision.sequence:
        parts.append(f"sequence={decision.sequence}")
    if decision.ports:
        parts.append("ports=" + ",".join(decision.ports))
    if decision.expires is not None:
        parts.append(f"until={_when(decision.expires)}")
    return " ".join(parts)


def _when(at: float) -> str:
    if at > 1e9:  # a wall-clock time; smaller values count from boot
        return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return f"{at:.6f}"


def _summary(pipeline: Pipeline, seconds: float) -> None:
    c = pipeline.total()
    rate = c.lines / seconds if seconds > 0 else 0.0
    print(
        f"logknock replay: {c.lines} lines in {seconds:.2f}s ({rate:,.0f} lines/s), "
        f"{c.prefix_hits} with our prefix, {c.parsed} parsed, {c.knocks} knocks, "
        f"decisions {dict(pipeline.decisions) or '{}'}",
        file=sys.stderr,
    )
    if c.rejections:
        print(f"logknock replay: rejected {dict(c.rejections)}", file=sys.stderr)
    if c.untrusted:
        print(
            f"logknock replay: {c.untrusted} lines could not prove a kernel origin and were "
            "ignored (--kernel-only)",
            file=sys.stderr,
        )
