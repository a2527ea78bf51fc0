"""The general knock path: any knock, any progress, by the rules of docs/semantics.md.

It unpacks a source's progress into one `Progress` view per sequence, steps
every view, restarts what the knock starts afresh and counts the failure.
`Tracker` sends the common shapes through its lanes instead (tracker.py);
everything else comes here, and tests/test_tracker_fast.py holds the lanes to
this path's answers.
"""

from __future__ import annotations

from operator import attrgetter

from .models import Decision, Knock
from .tracker_core import Core
from .tracker_routes import Plan, Route, Start
from .tracker_table import Progress


class General(Core):
    def _knock(self, key: int, knock: Knock) -> list[Decision]:
        """Follow any knock from a source that is not banned."""
        first, advanced = self._table.first(key), self._table.advanced(key)
        if first is None and not advanced:  # a source with no progress
            return self._begin(key, knock, self._start(key, knock, set()))
        views = _views(key, first, advanced, knock, self._clock)
        if views and _ignored(views, knock, self._config.duplicate_window):
            return []
        moved, done = self._step(key, views, knock)
        start = self._start(key, knock, {p.plan for p in moved} | {r.plan for r in done})
        self._table.drop_source(key)
        for progress in moved:
            self._table.put_advanced(progress)
            self._soon(progress.deadline)
        out = [d for route in done for d in self._complete(key, knock, route)]
        out += self._begin(key, knock, start)
        if views and not (moved or done or start):
            out += self._fail(key, knock.src, knock.at)
        return out

    def _begin(self, key: int, knock: Knock, start: Start | None) -> list[Decision]:
        """Record the first steps a knock matched; a one-step sequence completes at once."""
        if start is None:
            return []
        waiting = Start.of(r for r in start.routes if len(r.steps) > 1) if start.single else start
        if waiting is not None:
            self._table.put_first(key, waiting, knock.at)
            self._soon(knock.at + waiting.wait)
        if not start.single:
            return []
        singles = [r for r in start.routes if len(r.steps) == 1]
        return [d for route in singles for d in self._complete(key, knock, route)]

    def _step(
        self, key: int, views: list[Progress], knock: Knock
    ) -> tuple[list[Progress], list[Route]]:
        """Advance each view the knock is the next step of; the rest are reset."""
        moved: list[Progress] = []
        done: list[Route] = []
        for view in views:
            n = view.n
            routes = tuple(
                r for r in view.routes if r.steps[n].accepts(knock) and self._spent.usable(key, r)
            )
            finished = [r for r in routes if len(r.steps) == n + 1]
            if finished:
                done.append(finished[0])
            elif routes:
                moved.append(
                    Progress(key, knock.src, view.plan, n + 1, routes, view.first_at, knock.at)
                )
        return moved, done

    def _start(self, key: int, knock: Knock, busy: set[Plan]) -> Start | None:
        """What the knock starts afresh, leaving out sequences it just advanced."""
        start = self._first.start(knock)
        if start is None or (not busy and not start.totp):
            return start
        return Start.of(
            r for r in start.routes if r.plan not in busy and self._spent.usable(key, r)
        )


def _views(
    key: int,
    first: tuple[Start, float] | None,
    advanced: list[Progress],
    knock: Knock,
    clock: float,
) -> list[Progress]:
    """A source's live progress, first-step entries unpacked.

    Progress is live while the clock (the latest time seen) is at or before its
    deadline; advanced entries past it were already expired by `_advance`.
    """
    views = list(advanced)
    if first is not None:
        start, at = first
        for plan in start.plans:
            if clock <= at + plan.wait:
                routes = tuple(r for r in start.routes if r.plan is plan)
                views.append(Progress(key, knock.src, plan, 1, routes, at, at))
    return views


def _ignored(views: list[Progress], knock: Knock, window: float) -> bool:
    """An out-of-order knock, or a repeat of the step just matched within `window`."""
    last = max(views, key=attrgetter("last_at"))
    if knock.at < last.last_at:
        return True
    step = last.routes[0].steps[last.n - 1]
    repeat = step.port == knock.dport and step.proto == knock.proto
    return repeat and knock.at - last.last_at <= window
