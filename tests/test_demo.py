"""`logknock demo` on the real kernel: it tells each step and leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from testpaths import needs_root

from logknock.lab import list_namespaces

SYSCTL = Path("/proc/sys/net/netfilter/nf_log_all_netns")


@needs_root
@pytest.mark.root
def test_demo_narrates_the_whole_path_and_cleans_up() -> None:
    before = SYSCTL.read_text()
    done = subprocess.run(
        [sys.executable, "-m", "logknock", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    story = done.stdout
    for step in (
        "rules loaded",
        "refused before any knock",
        "kernel logged: SRC=198.18.0.2 PROTO=UDP DPT=7000",
        "daemon decided: open 198.18.0.2 demo 2222/tcp",
        "accepted",
        "daemon decided: close",
        "refused after open_for",
        "tearing down",
    ):
        assert step in story, f"missing {step!r} in:\n{story}"
    assert not [ns for ns in list_namespaces() if ns.startswith("lkdemo")]
    assert SYSCTL.read_text() == before


def test_demo_refuses_to_run_without_root(checkout_for_nobody: None) -> None:
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-c", "from logknock.cli import main; raise SystemExit(main(['demo']))"],
        capture_output=True, text=True, timeout=60, cwd="/", check=False,
        env={"PYTHONPATH": ":".join(sys.path)},
    )  # fmt: skip
    assert done.returncode == 2 and "as root" in done.stderr
