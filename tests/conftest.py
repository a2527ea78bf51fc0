"""Guards every test shares: none may leak a thread (paths live in testpaths.py).

And one thing tests that run a program as nobody (uid 65534) need: to reach
the checkout, to import logknock from it and start the venv's interpreter.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator

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
    """Let other users traverse the checkout's folder while the tests run.

    A checkout made in a `mktemp -d` folder is 0700: nobody could not reach the
    package or the venv in it. Traversal (o+x) is all that is added, no
    listing, and the folder's mode is put back at the end. Its contents keep
    their own modes (the umask's, world-readable for a git checkout)."""
    mode = stat.S_IMODE(ROOT.stat().st_mode)
    if mode & stat.S_IXOTH or os.geteuid() != 0:
        yield
        return
    ROOT.chmod(mode | stat.S_IXOTH)
    try:
        yield
    finally:
        ROOT.chmod(mode)
