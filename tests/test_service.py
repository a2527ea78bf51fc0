"""The service side without systemd as PID 1: sd_notify against a socket the
test binds (the protocol systemd speaks), journal logging against a real
journald. What stays untested here: systemd acting on WATCHDOG=1 misses."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from journald import journald_fixture

__all__ = ["journald_fixture"]  # the fixture `journald`

from logknock.service import Notifier, setup_logging


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_ready_status_stopping_reach_the_notify_socket(notify_socket: socket.socket) -> None:
    notifier = Notifier()
    notifier.ready("2 sequences")
    assert notify_socket.recv(4096).decode().split("\n") == ["READY=1", "STATUS=2 sequences"]
    notifier.status("reloaded")
    assert notify_socket.recv(4096) == b"STATUS=reloaded"
    notifier.stopping()
    assert notify_socket.recv(4096) == b"STOPPING=1"


def test_watchdog_pings_at_half_the_period(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    notifier = Notifier()
    assert notifier.watchdog_every == 1.0
    notifier.ping()
    assert notify_socket.recv(4096) == b"WATCHDOG=1"
    notifier.ping()  # too soon: nothing
    notify_socket.settimeout(0.2)
    with pytest.raises(TimeoutError):
        notify_socket.recv(4096)


def test_no_notify_socket_means_no_notifications(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    notifier.ready("x")  # must not fail or send anywhere
    assert not notifier.enabled


@pytest.mark.root
def test_under_systemd_logs_go_to_the_journal_with_fields(
    journald: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from systemd import journal

    monkeypatch.setenv("INVOCATION_ID", uuid.uuid4().hex)
    marker = uuid.uuid4().hex
    log = setup_logging()
    try:
        logging.getLogger("logknock.test").info(
            "open %s", marker, extra={"LOGKNOCK_SRC": "198.51.100.7", "LOGKNOCK_SEQUENCE": "ssh"}
        )
    finally:
        for handler in log.handlers:
            handler.close()
        log.handlers.clear()
    reader = journal.Reader()
    reader.add_match(MESSAGE=f"open {marker}")
    entries = []
    for _ in range(50):
        reader.seek_head()
        entries = list(reader)
        if entries:
            break
        reader.wait(0.1)
    assert entries, "the log line did not reach the journal"
    entry = entries[0]
    assert entry["LOGKNOCK_SRC"] == "198.51.100.7" and entry["LOGKNOCK_SEQUENCE"] == "ssh"
    assert entry["SYSLOG_IDENTIFIER"] == "logknock" and entry["_PID"] == os.getpid()
