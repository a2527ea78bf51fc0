"""Checks on packs themselves: lint of their regexes and their fixture run.

Used by `logknock patterns test` and by the test suite's meta-tests.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .fixtures import CaseRunner, fixture_files, read_cases
from .packs import Pack, digest_state

# `.*`, `.+`, `.{2,}` (lazy or not): a catch-all that can swallow a field an
# attacker controls and shift the capture after it (fail2ban's CVE shape).
CATCH_ALL = re.compile(r"(?<!\\)\.(?:\*|\+|\{[0-9]*,\})")
SOURCE_TREE_FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
SHIPPED_FIXTURES = Path("/usr/share/logknock/fixtures")


def lint(pack: Pack) -> list[str]:
    """Problems in a pack's regexes that no fixture would show."""
    problems = []
    for pattern in pack.patterns:
        last_capture = pattern.source.rfind("(?P<")
        for found in CATCH_ALL.finditer(pattern.source, 0, max(last_capture, 0)):
            problems.append(
                f"pattern {pattern.id}: greedy catch-all {found.group()!r} at {found.start()} "
                "before a captured field"
            )
    return problems


def default_fixture_root() -> Path:
    env = os.environ.get("LOGKNOCK_FIXTURES")
    if env:
        return Path(env)
    return SOURCE_TREE_FIXTURES if SOURCE_TREE_FIXTURES.is_dir() else SHIPPED_FIXTURES


@dataclass
class PackReport:
    """Counts for one pack's test run; `failures` are lines ready to print."""

    pack: Pack
    passed: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)


def run_pack_tests(
    pack: Pack, root: Path, on_case: Callable[[str], None] | None = None
) -> PackReport:
    """Every fixture of `pack`, its digest state, its lint and its pattern coverage."""
    report, runner = PackReport(pack), CaseRunner(pack)
    files = fixture_files(root, pack)
    if not files:
        report.failures.append(f"{pack.spec}: no fixtures in {root / pack.name}")
    for path in files:
        for case in read_cases(path):
            _, problems = runner.run(case)
            _count(report, case.where, problems, on_case)
    _count(report, f"{pack.spec}: lint", lint(pack), on_case)
    _count(report, f"{pack.spec}: digest", _digest_problems(pack), on_case)
    unhit = [f"pattern {p} is hit by no fixture" for p, n in runner.hits.items() if not n]
    _count(report, f"{pack.spec}: coverage", unhit if files else [], on_case)
    return report


def _count(
    report: PackReport, where: str, problems: list[str], on_case: Callable[[str], None] | None
) -> None:
    if problems:
        report.failures.extend(f"FAIL {where}: {p}" for p in problems)
    else:
        report.passed += 1
    if on_case:
        on_case(f"{'FAIL' if problems else 'ok  '} {where}")


def _digest_problems(pack: Pack) -> list[str]:
    state = digest_state(pack)
    if state == "modified":
        return [
            f"content of {pack.path / 'pack.yaml'} changed but its version {pack.version} "
            f"was released with another digest: give it a new version ({pack.digest})"
        ]
    return []
