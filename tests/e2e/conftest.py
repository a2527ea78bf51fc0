"""Fixtures of the end-to-end tests: `make_lab(kind, **settings)` builds a started E2ELab.

Root only (namespaces, nft, the kernel log); other users get a skip. The
sysctl net.netfilter.nf_log_all_netns is 1 for the session and restored
after; a journald runs for the journal and file kinds (tests/journald.py);
every lab is torn down after its test, whatever happened, and its daemon's
log is printed (pytest shows it for a failed test).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from e2elab import E2ELab, MakeLab
from journald import journald_fixture

from logknock.lab import nf_log_all_netns, remove_leftovers

__all__ = ["journald_fixture"]  # the `journald` fixture, for the journal and file kinds

TOOLS = ("ip", "nft", "rsyslogd", "logger", "setpriv", "systemd-cat", "knock", "nc")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    reason = None
    if os.geteuid() != 0:
        reason = "end-to-end tests need root (namespaces, nft, the kernel log)"
    elif missing := [t for t in TOOLS if t not in _found()]:
        reason = f"end-to-end tests need {', '.join(missing)}"
    for item in items:
        if reason and here in Path(item.path).parents:
            item.add_marker(pytest.mark.skip(reason=reason))


def _found() -> set[str]:
    path = "/usr/sbin:/usr/bin:/sbin:/bin"
    return {tool for tool in TOOLS if shutil.which(tool, path=path)}


@pytest.fixture(scope="session")
def nf_log() -> Iterator[None]:
    remove_leftovers("lke2e")  # namespaces of runs that were killed before they cleaned up
    with nf_log_all_netns():
        yield


@pytest.fixture
def make_lab(request: pytest.FixtureRequest, tmp_path: Path, nf_log: None) -> Iterator[MakeLab]:
    """Build and start a lab reading `kind` ("journal", "kmsg", "file")."""
    with ExitStack() as stack:

        def make(kind: str = "journal", **settings: Any) -> E2ELab:
            if kind in ("journal", "file"):
                request.getfixturevalue("journald")
            lab = E2ELab(tmp_path, kind, _open_folder(stack), **settings)
            stack.callback(_report, lab)
            stack.callback(lab.close)
            lab.start()
            return lab

        yield make


def _open_folder(stack: ExitStack) -> Path:
    """A folder every user may enter (tmp_path is root's alone), for the sockets forgers use."""
    folder = Path(tempfile.mkdtemp(prefix="lke2e-"))
    folder.chmod(0o755)
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _report(lab: E2ELab) -> None:
    print(f"---- daemon log ({lab.kind}, prefix {lab.prefix!r}) ----\n{lab.log_text()}")
    if lab.rsyslog is not None:
        received = "\n".join(lab.rsyslog.lines(lab.rsyslog.all_log, lab.prefix))
        print(f"---- rsyslogd ----\n{lab.rsyslog.errors()}\n---- all.log, our prefix ----")
        print(received)
