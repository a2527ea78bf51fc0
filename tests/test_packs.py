"""Every fixture of every shipped pack, and meta-tests on the packs themselves."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from testpaths import FIXTURES, PATTERNS

from logknock.errors import PackError
from logknock.fixtures import Case, CaseRunner, read_cases
from logknock.packcheck import lint, run_pack_tests
from logknock.packs import digest_state, load_pack, load_pack_dir

PACKS = sorted(p.parent.name for p in PATTERNS.glob("*/pack.yaml"))


def all_cases() -> list[tuple[str, Case]]:
    return [
        (name, case)
        for name in PACKS
        for path in sorted((FIXTURES / name).glob("*.txt"))
        for case in read_cases(path)
    ]


CASES = all_cases()
RUNNERS = {name: CaseRunner(load_pack_dir(PATTERNS / name)) for name in PACKS}


@pytest.mark.parametrize(
    ("pack", "case"), CASES, ids=[c.where.split("fixtures/")[-1] for _, c in CASES]
)
def test_fixture(pack: str, case: Case) -> None:
    _, problems = RUNNERS[pack].run(case)
    assert not problems, f"{case.where}: {problems}"


@pytest.mark.parametrize("name", PACKS)
def test_every_pattern_is_hit_by_a_fixture(name: str) -> None:
    report = run_pack_tests(load_pack_dir(PATTERNS / name), FIXTURES)
    coverage = [f for f in report.failures if "hit by no fixture" in f]
    assert not coverage
    assert report.passed > 0


@pytest.mark.parametrize("name", PACKS)
def test_shipped_pack_digest_matches_its_version(name: str) -> None:
    assert digest_state(load_pack_dir(PATTERNS / name)) == "released"


@pytest.mark.parametrize("name", PACKS)
def test_shipped_pack_has_no_catch_all_before_a_capture(name: str) -> None:
    assert lint(load_pack_dir(PATTERNS / name)) == []


@pytest.mark.parametrize("name", PACKS)
def test_shipped_pack_has_a_readme(name: str) -> None:
    assert "log" in (PATTERNS / name / "README.md").read_text().lower()


@pytest.fixture
def pack_copy(tmp_path: Path) -> Path:
    shutil.copytree(PATTERNS, tmp_path / "patterns")
    return tmp_path / "patterns" / "netfilter"


def test_edited_pack_is_reported_modified(pack_copy: Path) -> None:
    yaml = pack_copy / "pack.yaml"
    yaml.write_text(yaml.read_text() + "\n# a local edit\n")
    assert digest_state(load_pack_dir(pack_copy)) == "modified"


def test_edited_pack_fails_patterns_test(pack_copy: Path) -> None:
    yaml = pack_copy / "pack.yaml"
    yaml.write_text(yaml.read_text() + "\n# a local edit\n")
    report = run_pack_tests(load_pack_dir(pack_copy), FIXTURES)
    assert any("give it a new version" in f for f in report.failures)


def test_new_version_is_unreleased_until_indexed(pack_copy: Path) -> None:
    yaml = pack_copy / "pack.yaml"
    yaml.write_text(yaml.read_text().replace("version: 1.0.0", "version: 1.0.1"))
    assert digest_state(load_pack_dir(pack_copy)) == "unreleased"


def test_lint_flags_a_catch_all_before_a_capture(pack_copy: Path) -> None:
    yaml = pack_copy / "pack.yaml"
    yaml.write_text(yaml.read_text().replace("'SRC=(?P<src>", "'.*SRC=(?P<src>", 1))
    problems = lint(load_pack_dir(pack_copy))
    assert problems and "greedy catch-all '.*'" in problems[0]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("version: 1.0.0", "version: 1.0"), "not a semantic version"),
        (("name: netfilter", "name: other"), "must equal its folder"),
        (("'SRC=(?P<src>", "'SRC=(?P<src>(("), "bad regex"),
        (("%{ifname}) OUT=", "%{nosuch}) OUT="), "unknown fragment"),
        (("SRC=(?P<src>", "SRC=(?P<source>"), "lacks groups"),
    ],
)
def test_broken_pack_is_refused_with_its_file(
    pack_copy: Path, edit: tuple[str, str], message: str
) -> None:
    yaml = pack_copy / "pack.yaml"
    yaml.write_text(yaml.read_text().replace(*edit))
    with pytest.raises(PackError, match=message) as info:
        load_pack_dir(pack_copy)
    assert str(yaml) in str(info.value)


def test_version_pin_is_checked() -> None:
    assert load_pack("netfilter@1", PATTERNS).version.startswith("1.")
    with pytest.raises(PackError, match="wants 2"):
        load_pack("netfilter@2", PATTERNS)


def test_unknown_pack_names_where_it_looked() -> None:
    with pytest.raises(PackError, match="not found"):
        load_pack("nosuch", PATTERNS)
