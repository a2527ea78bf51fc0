"""Guards every test shares: none may leak a thread (paths live in testpaths.py).

And one thing tests that run a program as nobody (uid 65534) need: to reach
the checkout, to import logknock from it and start the venv's interpreter.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from testpaths import ROOT


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=5)  # a cancelled timer may take a moment to end
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leaked, f"test leaked threads: {leaked}"


@pytest.fixture(scope="session")
def checkout_for_nobody() -> Iterator[None]:
    """Let other users reach the checkout while the tests that run as nobody need it.

    A checkout made in a `mktemp -d` folder (0700), or under /root, lies below a
    folder that others cannot traverse: nobody could not reach the package or
    the venv in it. Traversal (o+x) is all that is added, no listing, to each
    such folder from the checkout up to /, and each one's mode is put back at
    the end. The folders' contents keep their own modes."""
    changed: list[tuple[Path, int]] = []
    if os.geteuid() == 0:
        for folder in (ROOT, *ROOT.parents):
            mode = stat.S_IMODE(folder.stat().st_mode)
            if not mode & stat.S_IXOTH:
                folder.chmod(mode | stat.S_IXOTH)
                changed.append((folder, mode))
    try:
        yield
    finally:
        for folder, mode in changed:
            folder.chmod(mode)
