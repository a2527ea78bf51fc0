"""What a command imports before it runs: only what it uses.

Start-up time is mostly imports (YAML, the regex module, the firewall
renderer, `sh`), so each case runs one command in a fresh interpreter and
checks the modules it ended with: those it must have (the probe works), and
those it must not pull in.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from pathlib import Path

import pytest
from testpaths import ROOT

CONFIG = ROOT / "bench" / "configs" / "throughput.yaml"
PROBE = """
import json, sys
from logknock.cli import main
try:
    main(sys.argv[2:])
except SystemExit:
    pass
with open(sys.argv[1], "w") as out:
    json.dump(sorted(sys.modules), out)
"""
COMMAND_MODULES = "logknock.cmd_*"
FIREWALL = "logknock.firewall*"
# (words after `logknock`, modules it must import, modules it must not)
CASES = [
    (["--version"], ["logknock.cli"], [COMMAND_MODULES, "logknock.errors", "yaml", "regex"]),
    (["--vers"], ["logknock.cli"], [COMMAND_MODULES]),
    (["--help"], [COMMAND_MODULES], []),
    (["run", "--help"], ["logknock.cmd_run"], ["logknock.config", "yaml", "logknock.daemon"]),
    (
        ["replay", "--config", str(CONFIG), "{empty}"],
        ["logknock.cmd_replay", "yaml"],
        [FIREWALL, "sh", "logknock.hooks", "logknock.daemon", "difflib"],
    ),
]


def imported(words: list[str], tmp_path: Path) -> list[str]:
    out = tmp_path / "modules.json"
    argv = [sys.executable, "-c", PROBE, str(out), *words]
    subprocess.run(argv, cwd=tmp_path, capture_output=True, check=True, timeout=60)
    found: list[str] = json.loads(out.read_text())
    return found


@pytest.mark.parametrize(
    ("words", "wanted", "unwanted"), CASES, ids=[" ".join(c[0][:2]) for c in CASES]
)
def test_a_command_imports_only_what_it_uses(
    words: list[str], wanted: list[str], unwanted: list[str], tmp_path: Path
) -> None:
    (tmp_path / "empty.log").write_bytes(b"")
    modules = imported([w.format(empty=tmp_path / "empty.log") for w in words], tmp_path)
    assert all(fnmatch.filter(modules, pattern) for pattern in wanted), wanted
    assert [m for pattern in unwanted for m in fnmatch.filter(modules, pattern)] == []
