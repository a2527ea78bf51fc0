"""Answers to control-socket requests, on the daemon's main loop.

Requests: `{"cmd": "status"}`, `{"cmd": "open", "src": ADDR, "sequence": NAME,
"for": SECONDS}` and `{"cmd": "close", "src": ADDR, "sequence": NAME|null}`.
Answers carry `"ok": true|false`; open and close return the decisions made.
"""

from __future__ import annotations

import ipaddress
import os
import time
from typing import TYPE_CHECKING, Any

from .control import Request
from .models import Decision
from .pipeline import Counters

if TYPE_CHECKING:
    from .daemon import Daemon


def handle_request(daemon: Daemon, request: Request) -> list[Decision]:
    """Answer `request`; the decisions it caused (manual open/close)."""
    body = request.body
    try:
        if body.get("cmd") == "status":
            request.reply({"ok": True, **status(daemon)})
            return []
        decisions = _manual(daemon, body)
    except (ValueError, TypeError) as exc:
        request.reply({"ok": False, "error": str(exc)})
        return []
    request.reply({"ok": True, "decisions": [d.as_json() for d in decisions]})
    return decisions


def _manual(daemon: Daemon, body: dict[str, Any]) -> list[Decision]:
    src = ipaddress.ip_address(str(body.get("src", "")))
    sequence = body.get("sequence")
    now = time.time()
    if body.get("cmd") == "open":
        if not sequence:
            raise ValueError("open needs --sequence")
        duration = body.get("for")
        return daemon.tracker.grant(src, str(sequence), now, float(duration) if duration else None)
    if body.get("cmd") == "close":
        return daemon.tracker.revoke(src, now, str(sequence) if sequence else None)
    raise ValueError(f"unknown command {body.get('cmd')!r}")


def status(daemon: Daemon) -> dict[str, Any]:
    now = time.time()
    return {
        "pid": os.getpid(),
        "uptime": round(now - daemon.started, 1),
        "config": daemon.config_path,
        "grants": [_grant(g, now) for g in daemon.tracker.grants],
        "bans": [{"src": str(b.src), "until": b.until} for b in daemon.tracker.bans],
        "tracked": daemon.tracker.tracked_count,
        "sources": {r.name: _source(daemon, r) for r in daemon.runners},
        "decisions": dict(daemon.pipeline.decisions),
        "hooks": _hooks(daemon),
        "drift": {"count": daemon.drift.count, "last_line": daemon.drift.last_line},
    }


def _grant(grant: Any, now: float) -> dict[str, Any]:
    return {
        "src": str(grant.src),
        "sequence": grant.sequence,
        "ports": list(grant.ports),
        "expires": grant.expires,
        "remaining": round(max(0.0, grant.expires - now), 1),
    }


def _source(daemon: Daemon, runner: Any) -> dict[str, Any]:
    data = (daemon.pipeline.by_source.get(runner.name) or Counters()).as_json()
    data["position"] = daemon.positions.get(runner.name) or runner.position()
    data["failure"] = runner.failure.error if runner.failure else None
    return data


def _hooks(daemon: Daemon) -> dict[str, Any]:
    with daemon.lock:
        pending = [
            {"id": p.id, "phase": p.phase, "attempts": p.attempts, **p.decision}
            for p in daemon.state.pending.values()
        ]
    return {
        "pending": pending,
        "failures": daemon.dispatch.failures,
        "last_failure": daemon.dispatch.last_failure,
    }
