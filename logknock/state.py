"""The daemon's state file: what must survive a restart, a crash or kill -9.

One JSON document in `state_dir/state.json`, replaced atomically: written to
a temporary file in the same folder, fsync'd, renamed over the old one, and
the folder fsync'd, so a crash at any moment leaves either the old or the
new state, never a mix. It holds the source positions, the tracker's
snapshot (grants, bans, one-time consumption, the TOTP replay cache) and the
hook journal: decisions whose hook has not finished yet.

The hook journal gives each decision an id and a phase. `queued`: the hook
has not started. `running`: it started; after a crash nobody knows whether it
finished. At restart a queued decision runs normally; a running open is not
run again (no hook twice for one decision: the grant stands and its close
comes at expiry); a running close is run again, because a port must never stay
open past its expiry and closing is idempotent.

The move to `running` is written without fsync: it must survive kill -9,
which it does (the rename is in the page cache), while after a power loss
the firewall's own state is gone too, and running the open again is harmless.
Every decision itself is written durably before its hook starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LogknockError

FORMAT_VERSION = 1


class StateError(LogknockError):
    """The state file exists but cannot be used."""


@dataclass
class PendingHook:
    id: int
    phase: str  # "queued" | "running"
    decision: dict[str, Any]  # Decision.as_json()
    attempts: int = 0


@dataclass
class State:
    positions: dict[str, str] = field(default_factory=dict)
    tracker: str | None = None  # TrackerState.to_json()
    pending: dict[int, PendingHook] = field(default_factory=dict)
    next_id: int = 1

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": FORMAT_VERSION,
                "positions": self.positions,
                "tracker": json.loads(self.tracker) if self.tracker else None,
                "pending": [vars(p) for p in sorted(self.pending.values(), key=lambda p: p.id)],
                "next_id": self.next_id,
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> State:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise StateError(f"unknown state format {data.get('version')!r}")
        pending = {int(p["id"]): PendingHook(**p) for p in data.get("pending", [])}
        tracker = data.get("tracker")
        return cls(
            positions={str(k): str(v) for k, v in data.get("positions", {}).items()},
            tracker=json.dumps(tracker) if tracker is not None else None,
            pending=pending,
            next_id=int(data.get("next_id", max(pending, default=0) + 1)),
        )


class StateFile:
    """Loads and atomically saves one `State`."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / "state.json"

    def load(self) -> State:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return State()
        except OSError as exc:
            raise StateError(f"{self.path}: {exc.strerror}") from exc
        try:
            return State.from_json(text)
        except (ValueError, TypeError, KeyError) as exc:
            raise StateError(f"{self.path}: not a logknock state file: {exc}") from exc

    def save(self, state: State, durable: bool = True) -> None:
        """Replace the file atomically. `durable=False` skips the fsyncs: the new
        state survives a crash of the process (kill -9), not a power loss."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = state.to_json().encode()
        fd, tmp = tempfile.mkstemp(prefix=".state.", dir=self.dir)
        try:
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if durable:
            fsync_dir(self.dir)

    def quarantine(self) -> Path:
        """Move an unusable state file aside, keeping it for the operator."""
        target = self.path.with_suffix(".broken")
        os.replace(self.path, target)
        return target


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
