"""Open grants, when they close, and how often completions may touch them.

One grant per (source, sequence). Expiries sit in a heap with one item per
grant: when an item comes due for a grant that was refreshed since, it is
pushed again with the new expiry instead of closing.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from dataclasses import dataclass

from .models import Action, Decision, IPAddress
from .tracker_state import GrantState

GrantKey = tuple[int, str]  # (source key, sequence name)
REFRESH = 1.0  # at most one decision a second per grant from completions


@dataclass(slots=True)
class _Grant:
    src: IPAddress
    sequence: str
    ports: tuple[str, ...]
    expires: float
    opened: float
    queued: float  # the expiry its heap item carries


class Grants:
    def __init__(self) -> None:
        self._open: dict[GrantKey, _Grant] = {}
        self._due: list[tuple[float, GrantKey]] = []
        self._quiet: OrderedDict[GrantKey, float] = OrderedDict()  # last completion decision

    def get(self, key: GrantKey) -> GrantState | None:
        grant = self._open.get(key)
        return None if grant is None else _state(grant)

    def states(self) -> tuple[GrantState, ...]:
        grants = sorted(self._open.values(), key=lambda g: (g.expires, str(g.src), g.sequence))
        return tuple(_state(grant) for grant in grants)

    def quiet(self, key: GrantKey, at: float, now: float) -> bool:
        """True while the clock (`now`, never before `at`) is less than REFRESH
        past the last completion that decided something; otherwise the
        completion at `at` becomes that last one."""
        last = self._quiet.get(key)
        if last is not None and now - last < REFRESH:
            return True
        self._quiet[key] = at
        self._quiet.move_to_end(key)
        self._forget_quiet(now)
        return False

    def open(self, key: GrantKey, state: GrantState) -> Decision:
        """Open or refresh a grant; the open decision carries its expiry."""
        grant = self._open.get(key)
        if grant is None:
            grant = self._open[key] = _Grant(*_fields(state), queued=math.inf)
        grant.ports, grant.expires, grant.opened = state.ports, state.expires, state.opened
        if grant.expires < grant.queued:
            self._queue(key, grant)
        return Decision(
            state.opened, Action.OPEN, state.src, state.sequence, state.ports, state.expires
        )

    def close(self, key: GrantKey, at: float) -> list[Decision]:
        """Close the grant now; nothing when there is none."""
        grant = self._open.pop(key, None)
        if grant is None:
            return []
        return [Decision(at, Action.CLOSE, grant.src, grant.sequence, grant.ports)]

    def close_source(self, src_key: int, at: float) -> list[Decision]:
        """Close every grant of a source."""
        keys = sorted(key for key in self._open if key[0] == src_key)
        return [decision for key in keys for decision in self.close(key, at)]

    def expire(self, now: float) -> list[Decision]:
        """Close the grants whose expiry is at or before `now`, each at its expiry."""
        self._forget_quiet(now)
        closed: list[Decision] = []
        while self._due and self._due[0][0] <= now:
            due, key = heapq.heappop(self._due)
            grant = self._open.get(key)
            if grant is None or grant.queued != due:
                continue  # closed, or queued again since
            if grant.expires > now:
                self._queue(key, grant)
            else:
                closed += self.close(key, grant.expires)
        return closed

    def next_due(self) -> float:
        """When `expire` can next close something. Forgetting old completions is
        housekeeping, done on the way (`quiet`, `expire`): it never calls for a sweep."""
        return self._due[0][0] if self._due else math.inf

    def _forget_quiet(self, now: float) -> None:
        """Drop completions REFRESH or more before `now`: they quiet nothing any more."""
        while self._quiet and now - next(iter(self._quiet.values())) >= REFRESH:
            self._quiet.popitem(last=False)

    def _queue(self, key: GrantKey, grant: _Grant) -> None:
        grant.queued = grant.expires
        heapq.heappush(self._due, (grant.expires, key))


def _fields(state: GrantState) -> tuple[IPAddress, str, tuple[str, ...], float, float]:
    return state.src, state.sequence, state.ports, state.expires, state.opened


def _state(grant: _Grant) -> GrantState:
    return GrantState(grant.src, grant.sequence, grant.ports, grant.expires, grant.opened)
