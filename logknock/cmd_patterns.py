"""`logknock patterns list|test|match|digest|selftest`: tools for pattern packs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .envelope import ENVELOPES
from .errors import UsageError
from .matcher import DEFAULT_PREFIX, Matcher
from .models import Match
from .packcheck import default_fixture_root, run_pack_tests
from .packs import digest_state, iter_pack_dirs, load_pack, load_pack_dir


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("patterns", help="list, test and try pattern packs")
    parser.add_argument("--patterns-dir", help="folder of packs (default: the installed ones)")
    sub = parser.add_subparsers(dest="patterns_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="packs, versions and digest state").set_defaults(func=run_list)
    test = sub.add_parser("test", help="run every fixture of every pack")
    test.add_argument("--pack", help="only this pack")
    test.add_argument("--fixtures", type=Path, help="fixture folder (holds <pack>/*.txt)")
    test.add_argument("-v", "--verbose", action="store_true", help="a line for every case")
    test.set_defaults(func=run_test)
    _register_match(sub)
    digest = sub.add_parser("digest", help="print a pack's digest line for index.yaml")
    digest.add_argument("pack")
    digest.set_defaults(func=run_digest)
    selftest = sub.add_parser("selftest", help="check the pack against this kernel (root)")
    selftest.add_argument("--live", action="store_true", required=True)
    selftest.add_argument("--pack", default="netfilter")
    selftest.set_defaults(func=run_selftest)


def _register_match(sub: Any) -> None:
    match = sub.add_parser("match", help="show what each line of a log turns into")
    match.add_argument("file", help="a log file, or - for standard input")
    match.add_argument("--pack", default="netfilter", help="NAME or NAME@VERSION")
    match.add_argument("--envelope", default="auto", choices=ENVELOPES)
    match.add_argument("--prefix", default=DEFAULT_PREFIX, help="our log prefix; '' for any")
    match.add_argument("--trusted", action="store_true", help="treat the file as kernel-only")
    match.add_argument("--json", action="store_true", help="one JSON object per input line")
    match.set_defaults(func=run_match)


def run_list(args: argparse.Namespace) -> int:
    for path in iter_pack_dirs(args.patterns_dir):
        pack = load_pack_dir(path)
        print(f"{pack.name:<12} {pack.version:<9} {digest_state(pack):<10} {pack.path}")
        print(f"{'':<12} {pack.description}")
    return 0


def run_test(args: argparse.Namespace) -> int:
    root = args.fixtures or default_fixture_root()
    packs = [load_pack(args.pack, args.patterns_dir)] if args.pack else _all_packs(args)
    passed = failed = 0
    for pack in packs:
        report = run_pack_tests(pack, root, print if args.verbose else None)
        for line in report.failures:
            print(line)
        print(f"{pack.spec}: {report.passed} passed, {report.failed} failed")
        passed, failed = passed + report.passed, failed + report.failed
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not packs else 0


def _all_packs(args: argparse.Namespace) -> list[Any]:
    return [load_pack_dir(path) for path in iter_pack_dirs(args.patterns_dir)]


def run_digest(args: argparse.Namespace) -> int:
    pack = load_pack(args.pack, args.patterns_dir)
    print(f"{pack.name}:\n  {pack.version}: {pack.digest}")
    return 0


def run_match(args: argparse.Namespace) -> int:
    matcher = Matcher(load_pack(args.pack, args.patterns_dir), args.prefix, args.envelope)
    counts = {"lines": 0, "events": 0}
    for number, raw in enumerate(_lines(args.file), start=1):
        result = matcher.match(raw, trusted=args.trusted)
        counts["lines"] += 1
        counts["events"] += result.event is not None
        print(_format_json(number, result) if args.json else _format_text(number, result))
    print(f"{counts['lines']} lines, {counts['events']} events", file=sys.stderr)
    return 0


def _lines(name: str) -> Iterator[bytes]:
    stream: IO[bytes]
    try:
        stream = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror}") from exc
    with stream:
        for line in stream:
            yield line.rstrip(b"\n").removesuffix(b"\r")


def _format_json(number: int, result: Match) -> str:
    return json.dumps(
        {
            "n": number,
            "origin": result.envelope.origin.value if result.envelope else "unknown",
            "matched": result.event is not None,
            "pack": result.pack,
            "pattern": result.pattern,
            "event": result.event.as_json() if result.event else None,
            "reason": str(result.rejection) if result.rejection else None,
        }
    )


def _format_text(number: int, result: Match) -> str:
    origin = result.envelope.origin.value if result.envelope else "unknown"
    if result.event is None:
        return f"{number}: no event [{origin}]: {result.rejection}"
    fields = " ".join(f"{k}={v}" for k, v in result.event.as_json().items() if v not in ("", None))
    note = " (a text file cannot prove the kernel wrote it)" if origin == "unknown" else ""
    return f"{number}: {result.pattern} [{origin}{note}] {fields}"


def run_selftest(args: argparse.Namespace) -> int:
    from . import selftest  # imported late: it needs root tools the other actions do not

    code: int = selftest.run(pack_spec=args.pack, patterns_dir=args.patterns_dir)
    return code
