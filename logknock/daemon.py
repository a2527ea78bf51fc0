"""`logknock run`: sources, pipeline, tracker and hooks wired into a service.

Threads: one per source (reading, queueing records), a few hook workers, the
control socket server. The main loop alone touches the tracker and the
pipeline: it takes records, control requests and hook reports from one queue,
ticks the tracker for expiries, journals decisions in the state file before
their hooks run (`logknock.state`: one flushed append per batch of decisions),
saves source positions, and compacts the state file when its journal has
grown. Signals only set flags.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

from .control import ControlServer, Request
from .daemon_setup import (
    build_source,
    load_config,
    source_name,
    warn_about_journal,
    warn_about_namespaces,
)
from .daemon_status import handle_request
from .dispatch import Dispatch, HookDone
from .errors import ConfigError
from .hooks import HookResult
from .matcher import Matcher
from .models import Decision, LogRecord, Rejection
from .packs import load_pack
from .pipeline import Pipeline
from .schema import SourceSpec
from .service import Notifier
from .sources.base import Source
from .sources.runner import SourceRunner
from .state import State, StateError, StateFile
from .tracker import Tracker
from .tracker_state import TrackerState

log = logging.getLogger("logknock")

TICK = 0.25  # how often expiries are looked at, at most
SAVE_POSITIONS_EVERY = 2.0
DRIFT_LOG_EVERY = 60.0


@dataclass
class Drift:
    """Lines with our prefix that no pattern parses: the early warning of a format change."""

    count: int = 0
    last_line: str | None = None
    last_logged: float = -DRIFT_LOG_EVERY


class Daemon:
    def __init__(self, config_path: str, notifier: Notifier | None = None) -> None:
        self.config_path = config_path
        self.config = load_config(config_path)
        self.notifier = notifier or Notifier()
        self.queue: queue.Queue[object] = queue.Queue(maxsize=10_000)
        self.stop = threading.Event()
        self.reload_wanted = threading.Event()
        self.lock = threading.Lock()
        self.started = time.time()
        self.drift = Drift()
        self._setup_state()
        self._setup_pipeline()
        self.dispatch = Dispatch(
            self.config, self.state, self._commit, self.lock, notify=self.queue.put
        )
        self.runners: list[SourceRunner] = []
        self.control: ControlServer | None = None

    # -- set up -----------------------------------------------------------------

    def _setup_state(self) -> None:
        self.state_file = StateFile(self.config.state_dir)
        try:
            self.state = self.state_file.load()
        except StateError as exc:
            moved = self.state_file.quarantine()
            log.error("%s; moved it to %s and starting with an empty state", exc, moved)
            self.state = State()
        self.positions = dict(self.state.positions)
        self.saved_positions = dict(self.positions)

    def _setup_pipeline(self) -> None:
        tracker_state = TrackerState.from_json(self.state.tracker) if self.state.tracker else None
        self.tracker = Tracker(self.config, state=tracker_state)
        self.revision = self.tracker.revision
        self.pipeline = Pipeline(
            Matcher(load_pack(self.config.pack, self.config.patterns_dir), self.config.prefix),
            self.tracker,
            max_age=self.config.longest_window,
            on_drift=self._drift,
        )

    def _start_sources(self) -> None:
        since = time.time() - self.config.longest_window
        for spec in self.config.sources:
            name = source_name(spec)
            stop = threading.Event()

            def make(resume: str | None, spec: SourceSpec = spec) -> Source:
                return build_source(spec, resume, since)

            runner = SourceRunner(make, name, self.queue, stop)
            runner.resume = self.positions.get(name)
            runner.start()
            self.runners.append(runner)

    # -- run --------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        warn_about_namespaces()
        warn_about_journal(self.config)
        with self.lock:
            resumed = self.dispatch.resume()
            self._compact()  # a fresh journal: never append after a cut line
        self.dispatch.start(resumed)
        self._handle(self.pipeline.tick(time.time()))  # grants that expired while down
        self._start_sources()
        self.control = ControlServer(self.config.control_socket, self.queue.put)
        self.notifier.ready(self._status_line())
        log.info("logknock started: %s", self._status_line())
        try:
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _loop(self) -> None:
        last_save = time.monotonic()
        while not self.stop.is_set():
            self._drain(deadline=time.monotonic() + TICK)
            now = time.time()
            self._handle(self.pipeline.tick(now))
            self.dispatch.retry_due(now)
            if self.reload_wanted.is_set():
                self.reload_wanted.clear()
                self.reload()
            if time.monotonic() - last_save >= SAVE_POSITIONS_EVERY:
                self._save_positions()
                last_save = time.monotonic()
            if self.state_file.compaction_due:
                with self.lock:
                    self._compact()
            self.notifier.ping()

    def _drain(self, deadline: float) -> None:
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                item = self.queue.get(timeout=left)
            except queue.Empty:
                return
            self._dispatch_item(item)

    def _dispatch_item(self, item: object) -> None:
        if isinstance(item, LogRecord):
            self._handle(self.pipeline.feed(item))
            if item.position is not None:
                self.positions[item.source] = item.position
        elif isinstance(item, Request):
            self._handle(handle_request(self, item))
        elif isinstance(item, HookDone):
            self._hook_done(item)

    def _handle(self, decisions: list[Decision]) -> None:
        """Journal decisions and the tracker's state durably, then start hooks."""
        if not decisions and self.tracker.revision == self.revision:
            return
        with self.lock:
            jobs, patch = self.dispatch.record(decisions)
            patch["tracker"] = self.tracker.snapshot().to_json()
            patch["positions"] = dict(self.positions)
            self.revision = self.tracker.revision
            self._commit(patch, True)
        self.dispatch.start(jobs)
        for decision in decisions:
            _log_decision(decision)

    def _hook_done(self, done: HookDone) -> None:
        result = done.result
        if result is None:
            return
        if result.ok:
            if result.output:
                log.info("hook %s %s: %s", result.hook, result.action, result.output)
            return
        self.dispatch.failures += 1
        self.dispatch.last_failure = f"{done.decision.action.value} {done.decision.src}: {result}"
        extra = {
            "LOGKNOCK_SRC": str(done.decision.src),
            "LOGKNOCK_SEQUENCE": done.decision.sequence,
        }
        log.error("hook %s %s failed: %s", result.hook, result.action, _why(result), extra=extra)
        pending = self.state.pending.get(done.job.id)
        if pending is not None:
            delay = self.dispatch.schedule_retry(done.job, pending.attempts)
            log.warning("close for %s will be retried in %.0fs", done.decision.src, delay)

    # -- state --------------------------------------------------------------------

    def _commit(self, patch: dict[str, Any], durable: bool) -> None:
        """Apply a change to the state and journal it (callers hold the lock)."""
        try:
            self.state_file.commit(self.state, patch, durable)
        except OSError as exc:
            log.error("cannot write state to %s: %s", self.state_file.dir, exc)

    def _compact(self) -> None:
        """Write the whole state as a new base (callers hold the lock)."""
        try:
            self.state_file.save(self.state)
        except OSError as exc:
            log.error("cannot save state to %s: %s", self.state_file.path, exc)

    def _save_positions(self) -> None:
        if self.positions == self.saved_positions:
            return
        with self.lock:
            self._commit({"positions": dict(self.positions)}, True)
        self.saved_positions = dict(self.positions)

    def _drift(self, record: LogRecord, rejection: Rejection) -> None:
        line = record.data[:500].decode("utf-8", "replace")
        self.drift.count += 1
        self.drift.last_line = line
        now = time.monotonic()
        if now - self.drift.last_logged >= DRIFT_LOG_EVERY:
            self.drift.last_logged = now
            log.warning(
                "format drift? a line from %s carries our prefix but no pattern parses it "
                "(%s): %s", record.source, rejection, line,
            )  # fmt: skip

    # -- reload and stop ------------------------------------------------------------

    def reload(self) -> None:
        try:
            new = load_config(self.config_path)
        except (ConfigError, OSError) as exc:
            log.error("reload refused, keeping the running configuration:\n%s", exc)
            return
        sources_changed = new.sources != self.config.sources
        self.config = self.dispatch.config = new
        self.tracker.reconfigure(new)
        self.pipeline.matcher = Matcher(load_pack(new.pack, new.patterns_dir), new.prefix)
        self.pipeline.max_age = new.longest_window
        if sources_changed:
            self._stop_sources()
            self._start_sources()
        log.info("configuration reloaded: %s", self._status_line())
        self.notifier.status(self._status_line())

    def _install_signals(self) -> None:
        def on_stop(signum: int, frame: FrameType | None) -> None:
            self.stop.set()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self.reload_wanted.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def _stop_sources(self) -> None:
        for runner in self.runners:
            runner.stop.set()
        for runner in self.runners:
            runner.thread.join(timeout=5)
        self.runners = []

    def _shutdown(self) -> None:
        self.notifier.stopping()
        log.info("stopping")
        self._stop_sources()
        self._drain(deadline=time.monotonic() + 1.0)  # what the sources had queued
        if self.config.close_on_stop:
            for grant in self.tracker.grants:
                self._handle(self.tracker.revoke(grant.src, time.time(), grant.sequence))
        if not self.dispatch.scheduler.close(timeout=self.config.hook_timeout + 5):
            log.warning("hooks still running at stop; the state file keeps them for next start")
        while not self.queue.empty():
            self._dispatch_item(self.queue.get_nowait())
        if self.control:
            self.control.close()
        with self.lock:
            self.state.tracker = self.tracker.snapshot().to_json()
            self.state.positions = dict(self.positions)
            self._compact()
        self.state_file.close()

    def _status_line(self) -> str:
        return (
            f"{len(self.config.sequences)} sequences, {len(self.tracker.grants)} open grants, "
            f"sources {', '.join(source_name(s) for s in self.config.sources)}"
        )


def _why(result: HookResult) -> str:
    reason = "timed out" if result.timed_out else result.error or f"exit code {result.exit_code}"
    return f"{reason}: {result.output}" if result.output else reason


def _log_decision(decision: Decision) -> None:
    extra = {
        "LOGKNOCK_ACTION": decision.action.value,
        "LOGKNOCK_SRC": str(decision.src),
        "LOGKNOCK_SEQUENCE": decision.sequence or "",
    }
    until = (
        f" until {time.strftime('%H:%M:%S', time.localtime(decision.expires))}"
        if (decision.expires)
        else ""
    )
    log.info(
        "%s %s %s%s%s", decision.action.value, decision.src, decision.sequence or "",
        f" {' '.join(decision.ports)}" if decision.ports else "", until, extra=extra,
    )  # fmt: skip
