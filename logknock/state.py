"""The daemon's state on disk: what must survive a restart, a crash or kill -9.

The state: the source positions, the tracker's snapshot (grants, bans,
one-time consumption, the TOTP replay cache) and the hook journal (decisions
whose hook has not finished). It lives in two files in `state_dir`:

- `state.json`, the base: the whole state as one JSON document with a
  generation number. It is replaced atomically: written to a temporary file,
  fsync'd, renamed over the old one, and the folder fsync'd.
- `state.journal`, the changes since that base: a header line naming the
  base's generation, then one line per change, a JSON object (a patch) whose
  `positions`, `tracker` and `next_id` replace the state's and whose
  `pending` sets or removes single hook journal entries. Lines are only ever
  appended, each with one write().

Loading reads the base and applies the journal's patches in order, up to the
first line that is not whole and valid (a write cut short by a crash). A
journal whose header names another generation is left out: the base already
holds all of it.

Why this is safe:
- A change is *durable* (survives a power loss) once its line is appended
  and the journal fdatasync'd: that one flush writes the new bytes and the
  file's size, and the journal's directory entry was made durable when the
  journal was created. A change appended without the flush survives kill -9
  (it is in the page cache) but maybe not a power loss.
- A line is whole or ignored. A line cut short can only be the last one
  written before the crash: everything before it was written first, and
  whatever a flush covers, it covers up to its end. Replay stops at the first
  bad line, so after a power loss it stops at the last flushed change at
  worst, never past a change that was not whole.
- Nothing is appended after a cut line: the first change after loading,
  and the first after a failed write, compacts (a new base and an empty
  journal) instead of appending.
- Compaction writes the new base (generation g+1) durably before it replaces
  the journal with an empty one for g+1 (temporary file, fsync, rename, fsync
  of the folder). A crash between the two leaves base g+1 beside the journal
  of g, which is left out; nothing is applied twice.

The hook journal gives each decision an id and a phase. `queued`: the hook
has not started. `running`: it started; after a crash nobody knows whether it
finished. At restart a queued decision runs normally; a running open is not
run again (no hook twice for one decision: the grant stands and its close
comes at expiry); a running close is run again, because a port must never stay
open past its expiry and closing is idempotent. Every decision is journaled
durably, with the tracker's snapshot that made it, before its hook starts. The
move to `running` and the removal when done are appended without the flush:
they must survive kill -9, which they do, while after a power loss the
firewall's own state is gone too and running the open again is harmless.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import LogknockError

log = logging.getLogger("logknock.state")

FORMAT_VERSION = 1
# Compaction (a few ms, on the main loop) is due when the journal is over both
# of these: each decision's change holds the tracker's snapshot, about a base.
COMPACT_MIN = 4 << 20  # bytes
COMPACT_RATIO = 16  # bases


class StateError(LogknockError):
    """The state file exists but cannot be used."""


@dataclass
class PendingHook:
    id: int
    phase: str  # "queued" | "running"
    decision: dict[str, Any]  # Decision.as_json()
    attempts: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "phase": self.phase, "decision": self.decision,
                "attempts": self.attempts}  # fmt: skip


@dataclass
class State:
    positions: dict[str, str] = field(default_factory=dict)
    tracker: str | None = None  # TrackerState.to_json()
    pending: dict[int, PendingHook] = field(default_factory=dict)
    next_id: int = 1
    generation: int = 0  # of the base this state was last written as

    def apply(self, patch: dict[str, Any]) -> None:
        """Take one journal change: replace what it names, set or remove pending entries."""
        if "positions" in patch:
            self.positions = {str(k): str(v) for k, v in patch["positions"].items()}
        if "tracker" in patch:
            self.tracker = None if patch["tracker"] is None else str(patch["tracker"])
        if "next_id" in patch:
            self.next_id = int(patch["next_id"])
        for key, entry in patch.get("pending", {}).items():
            if entry is None:
                self.pending.pop(int(key), None)
            else:
                self.pending[int(key)] = PendingHook(**entry)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": FORMAT_VERSION,
                "generation": self.generation,
                "positions": self.positions,
                "tracker": json.loads(self.tracker) if self.tracker else None,
                "pending": [p.as_json() for p in sorted(self.pending.values(), key=_id)],
                "next_id": self.next_id,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> State:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise StateError("not a JSON object")
        if data.get("version") != FORMAT_VERSION:
            raise StateError(f"unknown state format {data.get('version')!r}")
        pending = {int(p["id"]): PendingHook(**p) for p in data.get("pending", [])}
        tracker = data.get("tracker")
        return cls(
            positions={str(k): str(v) for k, v in data.get("positions", {}).items()},
            tracker=json.dumps(tracker) if tracker is not None else None,
            pending=pending,
            next_id=int(data.get("next_id", max(pending, default=0) + 1)),
            generation=int(data.get("generation", 0)),
        )


def _id(pending: PendingHook) -> int:
    return pending.id


class StateFile:
    """Loads a `State`, journals its changes, and compacts them into a new base.

    Callers serialise the calls (the daemon holds its state lock).
    """

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / "state.json"
        self.journal_path = self.dir / "state.journal"
        self._fd: int | None = None  # the journal, open for appending
        self._must_compact = True  # the journal on disk cannot take appends (yet)
        self.journal_bytes = 0
        self.base_bytes = 0

    def load(self) -> State:
        """The base with the journal's changes applied; StateError when unusable."""
        state = self._load_base()
        try:
            data = self.journal_path.read_bytes()
        except FileNotFoundError:
            return state
        except OSError as exc:
            raise StateError(f"{self.journal_path}: {exc.strerror}") from exc
        try:
            replay(state, data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StateError(f"{self.journal_path}: not a logknock journal: {exc}") from exc
        return state

    def commit(self, state: State, patch: dict[str, Any], durable: bool) -> None:
        """Apply `patch` to `state` and journal it; `durable` flushes it (and all
        before it) to the disk. Raises OSError, after which the next commit
        compacts."""
        state.apply(patch)
        if self._must_compact:
            self.save(state)
            return
        line = json.dumps(patch, separators=(",", ":")).encode() + b"\n"
        try:
            _write_all(self._journal(), line)
            if durable:
                os.fdatasync(self._journal())
        except OSError:
            self._must_compact = True  # a line may be cut short: never append after it
            raise
        self.journal_bytes += len(line)

    @property
    def compaction_due(self) -> bool:
        return self.journal_bytes > max(COMPACT_MIN, COMPACT_RATIO * self.base_bytes)

    def save(self, state: State) -> None:
        """Compact: `state` as the next generation's base, durably, then an empty journal."""
        self.close()
        self._must_compact = True
        data = replace(state, generation=state.generation + 1).to_json().encode()
        replace_durably(self.path, data)
        state.generation += 1
        header = _header(state.generation)
        replace_durably(self.journal_path, header)
        self._must_compact = False
        self.base_bytes, self.journal_bytes = len(data), len(header)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def quarantine(self) -> Path:
        """Move an unusable base and journal aside, keeping them for the operator."""
        self.close()
        target = self.path.with_suffix(".broken")
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, target)
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.journal_path, self.journal_path.with_suffix(".journal.broken"))
        return target

    def _load_base(self) -> State:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return State()
        except OSError as exc:
            raise StateError(f"{self.path}: {exc.strerror}") from exc
        try:
            return State.from_json(text)
        except (ValueError, TypeError, KeyError, StateError) as exc:
            raise StateError(f"{self.path}: not a logknock state file: {exc}") from exc

    def _journal(self) -> int:
        if self._fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
            self._fd = os.open(self.journal_path, flags)
        return self._fd


def replay(state: State, data: bytes) -> int:
    """Apply a journal's whole, valid lines to `state` (when its header names
    the state's generation); the number of changes applied."""
    lines = data.split(b"\n")[:-1]  # the last piece has no newline: cut short, or empty
    if not lines or _generation(lines[0]) != state.generation:
        if lines:
            log.warning("state journal: not for this state file's generation; left out")
        return 0
    for count, line in enumerate(lines[1:]):
        try:
            patch = json.loads(line)
        except ValueError:
            log.warning("state journal: a change was cut short (a crash); %d applied", count)
            return count
        state.apply(patch)
    return len(lines) - 1


def _header(generation: int) -> bytes:
    return json.dumps({"journal": FORMAT_VERSION, "generation": generation}).encode() + b"\n"


def _generation(line: bytes) -> int | None:
    try:
        header = json.loads(line)
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("journal") != FORMAT_VERSION:
        return None
    return int(header.get("generation", -1))


def replace_durably(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably (temporary file, fsync,
    rename, fsync of the folder): a crash leaves the old file or the new one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


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
