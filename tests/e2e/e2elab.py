"""The end-to-end lab: namespaces, the rendered ruleset, a listener, the real daemon.

`E2ELab` builds, for one test, two namespaces joined by a veth pair
(logknock.lab.Lab), loads the ruleset of `logknock firewall render --apply`
in the server namespace, starts a TCP listener on the protected ports there,
and runs `logknock run` in the server namespace with the shipped `nft-set`
hook (see README.md for why there). Everything logknock does goes through its
command line, named by the LOGKNOCK environment variable (default: this
Python's `-m logknock`), so the same tests run against the Debian package.

Counting knocks: every packet the client sends to a knock port or a closed
port is logged by the kernel and counted by the daemon (`knocks` of its
source in `logknock status --json`). The lab keeps the count it expects;
`settle()` waits until the daemon has read exactly that many, which is the
barrier before any "nothing opened" assertion.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from e2ecommon import (
    CLIENT4,
    CONFIG,
    DEFAULTS,
    ONCE,
    PROBE4,
    PROBE_STEP,
    PROTECTED,
    SECOND4,
    SERVER4,
    SERVER6,
    WEB,
    logknock_argv,
    poll,
    shipped_hook,
)
from e2enet import CONNECT, LISTENER, SEND
from e2esources import Rsyslog, source_yaml, status_key

from logknock.lab import Lab

SYSTEMD_ENV = ("NOTIFY_SOCKET", "JOURNAL_STREAM", "INVOCATION_ID", "WATCHDOG_USEC", "WATCHDOG_PID")
MakeLab = Callable[..., "E2ELab"]  # the `make_lab` fixture: make_lab(kind, **settings)


class E2ELab:
    def __init__(
        self,
        root: Path,
        kind: str,
        sockets: Path,
        firewall: Sequence[str] = (),
        hooks: dict[str, str] | None = None,
        **settings: str,
    ) -> None:
        """`sockets`: a folder every user can enter, for the sockets forgers write to;
        `firewall`: more options of `logknock firewall render`; `hooks`: more hook
        scripts by name, next to the shipped nft-set; `settings`: see CONFIG."""
        self.root, self.kind, self.sockets = root, kind, sockets
        self.firewall = tuple(firewall)
        self.hooks = dict(hooks or {})
        self.prefix = f"lke2e-{secrets.token_hex(4)}: "
        self.rsyslog = Rsyslog(root, sockets, self.prefix) if kind == "file" else None
        self.config = root / "logknock.yaml"
        self.socket = str(root / "control")
        self.daemon_log = root / "daemon.log"
        self.net = Lab("lke2e")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.expected = 0  # knocks the daemon should have read
        self.restarted = False  # a restart may read lines again: then only barrier() counts
        self.barriers = 0
        self.settings = DEFAULTS | settings

    # -- set up and tear down ------------------------------------------------------

    def start(self) -> None:
        """Namespaces, ruleset, listener, daemon; then the probe through the whole path."""
        self.net.__enter__()  # its own clean-up on failure; close() deletes it later
        for address in (SECOND4, PROBE4):
            self.client(["ip", "addr", "add", f"{address}/24", "dev", self.net.client_if])
        self._write_files()
        self.server([*logknock_argv(), "firewall", "render", "--config", str(self.config),
                     "--backend", "nft", "--apply", *self.firewall])  # fmt: skip
        self._start_listener()
        if self.rsyslog is not None:
            self.rsyslog.start()
        self.start_daemon()
        self.send(PROBE4, PROBE_STEP)
        self.settle()

    def close(self) -> None:
        """Stop what runs, delete the namespaces; safe to call at any point of start()."""
        try:
            for proc in self.procs.values():
                _stop(proc)
        finally:
            self.procs.clear()
            try:
                if self.rsyslog is not None:
                    self.rsyslog.stop()
            finally:
                self.net.close()

    def _write_files(self) -> None:
        hooks = self.root / "hooks"
        hooks.mkdir(mode=0o755)
        shutil.copy(shipped_hook(), hooks / "nft-set")
        (hooks / "nft-set").chmod(0o755)
        for name, script in self.hooks.items():
            (hooks / name).write_text(script)
            (hooks / name).chmod(0o755)
        lines = [" ".join(step.replace("/", ":") for step in line) for line in ONCE]
        (self.root / "once.txt").write_text("\n".join(lines) + "\n")
        (self.root / "once.txt").chmod(0o600)
        self.write_config()

    def write_config(self) -> None:
        source = source_yaml(self.kind, self.rsyslog)
        text = CONFIG.format(source=source, prefix=self.prefix, root=self.root, **self.settings)
        self.config.write_text(text)

    def _start_listener(self) -> None:
        argv = [sys.executable, "-c", LISTENER, *map(str, PROTECTED)]
        proc = self._spawn("listener", self.net.server_ns, argv, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], 10)
        ready = proc.stdout.readline() if readable else b"(nothing in 10 s)"
        assert ready == b"ready\n", f"listener: {ready!r}, exit {proc.poll()}"

    def _spawn(self, name: str, ns: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL, **kw)
        self.procs[name] = proc
        return proc

    # -- the daemon ----------------------------------------------------------------------

    def start_daemon(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}
        argv = [*logknock_argv(), "run", "--config", str(self.config)]
        with self.daemon_log.open("ab") as log:
            self._spawn(
                "daemon", self.net.server_ns, argv, stdout=log, stderr=log, env=env, cwd="/"
            )
        poll(self._daemon_answers, "the daemon's control socket", timeout=20)
        if self.rsyslog is not None:  # a fresh start reads from the end: look first, then send
            kernel_log = str(self.rsyslog.kernel_log)
            poll(lambda: self._daemon_has_open(kernel_log), "the daemon following the file")

    def _daemon_has_open(self, path: str) -> bool:
        """Whether the daemon holds `path` open: its file source took its first look."""
        fds = Path(f"/proc/{self.procs['daemon'].pid}/fd")
        try:
            return any(os.readlink(fd) == path for fd in fds.iterdir())
        except OSError:  # an fd closed while we looked: look again
            return False

    def _daemon_answers(self) -> bool:
        proc = self.procs["daemon"]
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode}:\n{self.log_text()}")
        return self._ask_status().returncode == 0

    def stop_daemon(self, sig: int = signal.SIGTERM) -> int:
        self.restarted = True
        proc = self.procs.pop("daemon")
        proc.send_signal(sig)
        return proc.wait(timeout=30)

    def _ask_status(self) -> subprocess.CompletedProcess[bytes]:
        argv = [*logknock_argv(), "status", "--json", "--socket", self.socket]
        return subprocess.run(argv, capture_output=True, timeout=15, check=False)

    def status(self) -> dict[str, Any]:
        """`logknock status --json`: the running daemon's grants, bans, counters."""
        done = self._ask_status()
        assert done.returncode == 0, f"status: {done.stderr.decode(errors='replace')}"
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    def source(self) -> dict[str, Any]:
        status = self.status()
        counters: dict[str, Any] = status["sources"][status_key(self.kind, self.rsyslog)]
        return counters

    def control(self, *args: str) -> str:
        """`logknock ARGS... --socket S` (status, open, close), run on the host."""
        argv = [*logknock_argv(), *args, "--socket", self.socket]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the daemon has read exactly the knocks sent so far."""
        assert not self.restarted, "after a restart lines may be read twice: use barrier()"
        poll(lambda: self.source()["knocks"] >= self.expected,
             f"{self.expected} knocks read by the daemon", timeout)  # fmt: skip
        assert self.source()["knocks"] == self.expected, f"{self.source()} != {self.expected}"

    def barrier(self) -> None:
        """Wait until the daemon has acted on everything sent so far, restarts or not.

        A fresh client address knocks `web`; lines are read and acted on in
        the order the kernel logged them, so once its open is logged, so are
        the consequences of every earlier line.
        """
        self.barriers += 1
        src = f"198.18.0.{100 + self.barriers}"
        self.client(["ip", "addr", "add", f"{src}/24", "dev", self.net.client_if])
        self.send(src, *WEB)
        poll(lambda: self.decisions_logged("open", src, "web") == 1, f"the barrier knock of {src}")

    def grants(self) -> list[dict[str, Any]]:
        return list(self.status()["grants"])

    def grant(self, sequence: str, src: str = CLIENT4) -> dict[str, Any]:
        """The grant of `sequence` to `src`, once the daemon reports it."""

        def found() -> list[dict[str, Any]]:
            return [g for g in self.grants() if (g["src"], g["sequence"]) == (src, sequence)]

        return dict(poll(found, f"the {sequence} grant for {src}")[0])

    def no_grant(self, src: str = CLIENT4) -> bool:
        return all(g["src"] != src for g in self.grants())

    def log_text(self) -> str:
        return self.daemon_log.read_text(errors="replace") if self.daemon_log.exists() else ""

    def decisions_logged(self, action: str, src: str, sequence: str) -> int:
        """How many `ACTION SRC SEQUENCE` decision lines all daemon runs logged."""
        pattern = rf"INFO {re.escape(action)} {re.escape(src)} {re.escape(sequence)}(?: |$)"
        return len(re.findall(pattern, self.log_text(), flags=re.MULTILINE))

    # -- the network ---------------------------------------------------------------------

    def server(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        return self.net.run_in(self.net.server_ns, argv, **kw)

    def client(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        return self.net.run_in(self.net.client_ns, argv, **kw)

    def knock(self, *steps: str, family: int = 4) -> None:
        """`logknock knock` from the client's main address."""
        host = SERVER6 if family == 6 else SERVER4
        self.client([*logknock_argv(), "knock", f"-{family}", host, *steps])
        self.expected += len(steps)

    def send(self, src: str, *steps: str, delay: float = 0.05) -> None:
        """One packet per step from `src`, as a scanner or a knock client would send them."""
        host = SERVER6 if ":" in src else SERVER4
        self.client([sys.executable, "-c", SEND, src, host, str(delay), *steps])
        self.expected += len(steps)

    def connects(self, port: int, src: str = CLIENT4, within: float = 2.0) -> bool:
        """Whether a connection from `src` to `port` gets the greeting within `within` s."""
        return self._connect(port, src, within, each=0.25).startswith("open")

    def refuses(self, port: int, src: str = CLIENT4) -> bool:
        """Whether a new connection from `src` gets no answer at all: its SYN is dropped.

        A SYN-ACK on the veth pair comes back in well under a millisecond;
        half a second of silence is a drop.
        """
        return self._connect(port, src, within=0, each=0.5) == "timeout"

    def _connect(self, port: int, src: str, within: float, each: float) -> str:
        host = SERVER6 if ":" in src else SERVER4
        argv = [sys.executable, "-c", CONNECT, host, str(port), src, str(within), str(each)]
        done = self.client(argv, check=False, timeout=within + each + 15)
        return done.stdout.decode().strip()

    def elements(self, family: int = 4) -> set[tuple[str, str, int]]:
        """The elements `(src, proto, port)` of the grant set in the server's nft table."""
        listing = self.server(["nft", "-j", "list", "set", "inet", "logknock", f"grants{family}"])
        found: set[tuple[str, str, int]] = set()
        for item in json.loads(listing.stdout)["nftables"]:
            for element in item.get("set", {}).get("elem", []):
                value = element["elem"]["val"] if "elem" in element else element
                src, proto, port = value["concat"]
                found.add((str(src), str(proto), int(port)))
        return found


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill a process the lab started (by its pid: `ip netns exec` execs the program)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()
