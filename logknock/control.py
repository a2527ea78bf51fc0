"""The control socket: `logknock status|open|close` talk to the running daemon.

A Unix stream socket (mode 0600, so only root and the service user reach it).
One request per connection: a JSON object on one line, answered by one JSON
object on one line. The server thread only parses and forwards: every request
is handed to the daemon's main loop (the only thread that touches the
tracker), which answers through the `Request`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LogknockError

MAX_REQUEST = 64 * 1024
ANSWER_TIMEOUT = 30.0


class ControlError(LogknockError):
    """The daemon cannot be reached, or it refused the request."""


@dataclass
class Request:
    """A request waiting for the main loop's answer."""

    body: dict[str, Any]
    answered: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] = field(default_factory=dict)

    def reply(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.answered.set()


class ControlServer:
    def __init__(self, path: str, forward: Callable[[Request], None]) -> None:
        self.path = Path(path)
        self.forward = forward
        self.sock = self._listen()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="logknock-control", daemon=True)
        self.thread.start()

    def _listen(self) -> socket.socket:
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(8)
        sock.settimeout(0.5)
        return sock

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5.0)
        try:
            body = json.loads(_read_line(conn))
            if not isinstance(body, dict):
                raise ValueError("a request is a JSON object")
            answer = self._ask(Request(body))
        except (ValueError, OSError) as exc:
            answer = {"ok": False, "error": f"bad request: {exc}"}
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(answer).encode() + b"\n")

    def _ask(self, request: Request) -> dict[str, Any]:
        self.forward(request)
        if not request.answered.wait(ANSWER_TIMEOUT):
            return {"ok": False, "error": "the daemon did not answer in time"}
        return request.answer

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(timeout=2)
        with contextlib.suppress(OSError):
            self.path.unlink()


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too large")
    return data


def call(path: str, body: dict[str, Any], timeout: float = ANSWER_TIMEOUT + 5) -> dict[str, Any]:
    """Send one request to the daemon and return its answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps(body).encode() + b"\n")
            answer = json.loads(_read_line(sock) or b"{}")
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot talk to the daemon at {path}: {exc}") from exc
    if not isinstance(answer, dict):
        raise ControlError(f"unexpected answer from {path}")
    return answer
