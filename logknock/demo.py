"""`logknock demo`: the whole path on the real kernel, narrated, then undone.

Builds two throwaway network namespaces (a server and a client on a veth
pair, addresses in 198.18.0.0/15), loads the rendered rules in the server,
runs the real daemon there on /dev/kmsg with the shipped nft-set hook, knocks
from the client with `logknock knock`, and tells each step as it happens:
rule loaded, knock sent, kernel line seen, hook ran, connection accepted,
port closed. Everything is removed at the end, also on Ctrl-C or an error:
the namespaces, the daemon, the temporary files and the sysctl it set.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from .errors import LogknockError
from .lab import KernelLog, Lab, nf_log_all_netns, wait_until

PREFIX = "lkdemo: "
PROTECTED = 2222
STEPS = ("7000/udp", "8500/udp", "7600/tcp")
OPEN_FOR = 8
SHIPPED_HOOKS = (
    Path(__file__).resolve().parent.parent / "hooks",
    Path("/usr/share/logknock/hooks"),
)

CONFIG = """\
source: kmsg
prefix: "{prefix}"
state_dir: {root}/state
hooks_dir: {root}/hooks
control_socket: {root}/control
defaults: {{step_timeout: 5s, sequence_timeout: 15s, open_for: {open_for}s, hook: nft-set}}
sequences:
  demo:
    knock: [{steps}]
    open: [{port}/tcp]
"""

LISTENER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
while True:
    c, _ = s.accept(); c.sendall(b"hello from the server\\n"); c.close()
"""

CONNECT = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5)
    print(c.recv(100).decode().strip())
except OSError as exc:
    print("FAILED", exc); sys.exit(1)
"""


class DemoError(LogknockError):
    pass


class Narrator:
    def __init__(self, out: TextIO) -> None:
        self.out, self.started, self.lock = out, time.monotonic(), threading.Lock()

    def __call__(self, what: str) -> None:
        with self.lock:
            print(f"[{time.monotonic() - self.started:6.2f}s] {what}", file=self.out, flush=True)


def logknock_command() -> list[str]:
    return [sys.executable, "-m", "logknock"]


def find_hook() -> Path:
    for folder in SHIPPED_HOOKS:
        if (folder / "nft-set").is_file():
            return folder / "nft-set"
    raise DemoError("the shipped nft-set hook is not installed")


def run(out: TextIO = sys.stdout) -> int:
    say = Narrator(out)
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            raise DemoError(f"the demo needs {tool!r}")
    with tempfile.TemporaryDirectory(prefix="logknock-demo-") as tmp, nf_log_all_netns():
        root = _prepare(Path(tmp))
        with Lab("lkdemo") as lab:
            say(f"built a server namespace ({lab.server_v4}) and a client ({lab.client_v4})")
            return _story(lab, root, say)


def _prepare(root: Path) -> Path:
    hooks = root / "hooks"
    hooks.mkdir(mode=0o755)
    shutil.copy(find_hook(), hooks / "nft-set")
    (hooks / "nft-set").chmod(0o755)
    text = CONFIG.format(
        prefix=PREFIX, root=root, open_for=OPEN_FOR, steps=", ".join(STEPS), port=PROTECTED
    )
    (root / "logknock.yaml").write_text(text)
    return root


def _story(lab: Lab, root: Path, say: Narrator) -> int:
    config = str(root / "logknock.yaml")
    lab.run_in(lab.server_ns, [*logknock_command(), "firewall", "render", "--config", config,
                               "--backend", "nft", "--apply"])  # fmt: skip
    say(f"rules loaded in the server: knocks {' '.join(STEPS)} logged with prefix "
        f"{PREFIX!r} and dropped; {PROTECTED}/tcp protected")  # fmt: skip
    with _background(lab, lab.server_ns, [sys.executable, "-c", LISTENER, str(PROTECTED)]):
        say(f"a server listens on {PROTECTED}/tcp")
        _expect_closed(lab, say, "before any knock")
        with _daemon(lab, config, say), KernelLog() as kernel:
            for step in STEPS:
                _knock(lab, step, kernel, say)
            wait_until(lambda: _connects(lab), "the grant", 10)
            say(f"connection to {PROTECTED}/tcp accepted: the port is open for the client only")
            say(f"waiting for the grant to expire ({OPEN_FOR}s)")
            wait_until(lambda: not _connects(lab), "the close", OPEN_FOR + 10)
            _expect_closed(lab, say, "after open_for")
    say("tearing down: namespaces, daemon, temporary files")
    return 0


def _knock(lab: Lab, step: str, kernel: KernelLog, say: Narrator) -> None:
    lab.run_in(lab.client_ns, [*logknock_command(), "knock", str(lab.server_v4), step])
    say(f"client sent knock {step} (logknock knock)")
    for line in kernel.collect(lambda r: PREFIX.encode() in r, 1, timeout=5):
        text = line.decode("utf-8", "replace")
        fields = [f for f in text.split() if f.startswith(("SRC=", "DPT=", "PROTO="))]
        say(f"kernel logged: {' '.join(fields)}")
    time.sleep(0.3)  # a gap between knocks, as a client leaves


def _connects(lab: Lab) -> bool:
    argv = [sys.executable, "-c", CONNECT, str(lab.server_v4), str(PROTECTED)]
    return lab.run_in(lab.client_ns, argv, check=False).returncode == 0


def _expect_closed(lab: Lab, say: Narrator, when: str) -> None:
    if _connects(lab):
        raise DemoError(f"{PROTECTED}/tcp connected {when}: the rules do not protect it")
    say(f"connection to {PROTECTED}/tcp refused {when}, as it should be")


@contextmanager
def _background(lab: Lab, ns: str, argv: list[str]) -> Iterator[None]:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


@contextmanager
def _daemon(lab: Lab, config: str, say: Narrator) -> Iterator[None]:
    argv = ["ip", "netns", "exec", lab.server_ns, *logknock_command(), "run", "--config", config]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    reader = threading.Thread(target=_narrate_daemon, args=(proc, say), daemon=True)
    reader.start()
    try:
        wait_until(lambda: Path(config).with_name("control").exists(), "the daemon", 15)
        say("daemon running in the server namespace, reading /dev/kmsg")
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=5)
        if proc.stderr:
            proc.stderr.close()


def _narrate_daemon(proc: subprocess.Popen[bytes], say: Narrator) -> None:
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.decode("utf-8", "replace").strip().removeprefix("logknock: ")
        if line.startswith(("INFO open ", "INFO close ")):
            say(f"daemon decided: {line.removeprefix('INFO ')}; running the nft-set hook")
        elif line.startswith(("ERROR", "WARNING format drift")):
            say(f"daemon: {line}")
