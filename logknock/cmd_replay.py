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
from .models import Decision, Digested
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
        args.files,
        needle=pipeline.matcher.needle,
        skipped=pipeline.count_lines,
        workers=_cpus(),
        digester=pipeline.digester if pipeline.lane else None,
    )
    gc.freeze()  # what is built so far lives to the end: the collector need not walk it again
    started = time.perf_counter()
    feed, feed_digested = pipeline.feed, pipeline.feed_digested
    for record in records:
        decisions = feed_digested(record) if isinstance(record, Digested) else feed(record)
        if decisions:
            _emit(decisions, args.json, runner)
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
        sys.stdout.write((_json_line(decision) if as_json else _text(decision)) + "\n")
        if runner is not None:
            runner.run_now(decision)


_ENCODED: dict[object, str] = {}  # sequence names and port lists: a few, from the config


def _json_line(decision: Decision) -> str:
    """`json.dumps(decision.as_json())`, built directly (replay may print a decision
    for every other line): the sequence and ports are encoded once, the address
    and the numbers need no escaping, and `repr` is how json writes a float."""
    sequence, ports = _encoded(decision.sequence), _encoded(decision.ports)
    expires = "null" if decision.expires is None else repr(round(decision.expires, 6))
    return (
        f'{{"at": {round(decision.at, 6)!r}, "action": "{decision.action.value}", '
        f'"sequence": {sequence}, "src": "{decision.src}", "ports": {ports}, '
        f'"expires": {expires}}}'
    )


def _encoded(value: object) -> str:
    try:
        return _ENCODED[value]
    except KeyError:
        text = _ENCODED[value] = json.dumps(list(value) if isinstance(value, tuple) else value)
        return text


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
