"""The shipped rsyslog rule writes the kernel's own lines, and only those.

An rsyslogd started by hand reads the kernel log (imklog) and a private
syslog socket, with /usr/share/logknock/rsyslog/logknock.conf included as
shipped except for two strings an administrator may edit: the prefix (a fresh
one, so that no other logknock on this machine acts on the test's line) and
the file (in a temporary folder). A nft rule in a lab namespace makes the
kernel log a packet; a forged line with the same text and facility kern is
sent to the socket, and another is written to /dev/kmsg. Only the kernel's
line may reach the file, and the service user must be able to read it.

Run by packaging/ci.sh after the package is installed, as root, with
`python3 -P` so that `logknock` is the installed package.
"""

from __future__ import annotations

import grp
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

RULE = Path("/usr/share/logknock/rsyslog/logknock.conf")
SHIPPED_FILE = 'file="/var/log/logknock/kernel.log"'
SETPRIV = ["setpriv", "--reuid=logknock", "--regid=logknock", "--groups=systemd-journal"]
PORT = 7127


def lab_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not RULE.exists() or shutil.which("rsyslogd") is None:
        return "needs the logknock package and rsyslog installed"
    if not no_other_rsyslogd(timeout=120):
        return "another rsyslogd is running: imklog allows one reader of /proc/kmsg"
    return None


def rsyslogd_running() -> bool:
    found = subprocess.run(["pgrep", "-x", "rsyslogd"], capture_output=True, check=False)
    return found.returncode == 0


def no_other_rsyslogd(timeout: float) -> bool:
    """Wait a while for another test's rsyslogd to end; True once none runs."""
    deadline = time.monotonic() + timeout
    while rsyslogd_running():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    """A folder the service user can reach (pytest's tmp_path is private to root)."""
    missing = lab_missing()
    if missing and os.environ.get("LOGKNOCK_REQUIRE_SERVICE_LAB") == "1":
        pytest.fail(f"the rsyslog lab cannot run here: {missing}")
    if missing:
        pytest.skip(missing)
    path = Path(tempfile.mkdtemp(prefix="logknock-rsyslog-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"lk{secrets.token_hex(4)}: "


@pytest.fixture(scope="module")
def rsyslogd(folder: Path, prefix: str) -> Iterator[Path]:
    """A running rsyslogd with the shipped rule; yields the file the rule writes."""
    logfile = folder / "log" / "kernel.log"
    rule = RULE.read_text()
    assert rule.count('"logknock: "') == 1 and rule.count(SHIPPED_FILE) == 1
    (folder / "rule.conf").write_text(
        rule.replace('"logknock: "', f'"{prefix}"').replace(SHIPPED_FILE, f'file="{logfile}"')
    )
    (folder / "rsyslog.conf").write_text(
        f'global(workDirectory="{folder}")\n'
        'module(load="imklog")\n'
        'module(load="imuxsock" SysSock.Use="off")\n'
        f'input(type="imuxsock" Socket="{folder}/log.sock")\n'
        f'include(file="{folder}/rule.conf")\n'
    )
    process = start_rsyslogd(folder)
    try:
        yield logfile
    finally:
        process.terminate()
        process.wait(timeout=10)


def start_rsyslogd(folder: Path) -> subprocess.Popen[bytes]:
    argv = ["rsyslogd", "-n", "-f", f"{folder}/rsyslog.conf", "-i", f"{folder}/rsyslogd.pid"]
    with (folder / "rsyslogd.out").open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while not (folder / "log.sock").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError((folder / "rsyslogd.out").read_text())
        time.sleep(0.05)
    return process


def kernel_line(prefix: str) -> None:
    """One genuine kernel LOG line: a UDP packet hits a `log prefix` rule in a lab."""
    from logknock.lab import Lab, nf_log_all_netns

    rules = (
        "table inet t {\n chain c {\n  type filter hook input priority 0;\n"
        f'  udp dport {PORT} log prefix "{prefix}" drop\n }}\n}}\n'
    )
    send = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        f"s.sendto(b'x', ('{Lab.server_v4}', {PORT}))"
    )
    with nf_log_all_netns(), Lab("lkrs") as lab:
        lab.run_in(lab.server_ns, ["nft", "-f", "-"], input=rules.encode())
        lab.run_in(lab.client_ns, ["python3", "-c", send])


def forged_lines(folder: Path, prefix: str) -> None:
    """The same kind of text from userspace: a kern.warning datagram and a /dev/kmsg write."""
    text = f"{prefix}IN=veth-s OUT= SRC=198.18.0.66 DST=198.18.0.1 PROTO=UDP SPT=4 DPT={PORT} "
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(f"<4>kernel: {text}".encode(), str(folder / "log.sock"))
    Path("/dev/kmsg").write_text(f"<4>{text}\n")


def wait_for_lines(logfile: Path, count: int, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = logfile.read_text().splitlines() if logfile.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.1)
    raise AssertionError(f"{logfile}: fewer than {count} lines after {timeout}s")


def test_only_the_kernel_line_reaches_the_file(rsyslogd: Path, folder: Path, prefix: str) -> None:
    # The forged lines go first: rsyslog's main queue keeps the order its
    # inputs received them in, so a forged line let through would be written
    # before the kernel's line, which the test waits for.
    forged_lines(folder, prefix)
    kernel_line(prefix)
    lines = wait_for_lines(rsyslogd, 1)
    assert len(lines) == 1, lines
    assert f"{prefix}IN=veth-s" in lines[0] and "SRC=198.18.0.2 " in lines[0]


def test_the_file_belongs_to_the_service_group(rsyslogd: Path) -> None:
    wait_for_lines(rsyslogd, 1)
    group = grp.getgrnam("logknock").gr_gid
    for path, mode in ((rsyslogd.parent, 0o750), (rsyslogd, 0o640)):
        info = path.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, group, mode), path


def test_the_service_user_parses_the_line(rsyslogd: Path, prefix: str) -> None:
    wait_for_lines(rsyslogd, 1)
    argv = [*SETPRIV, "logknock", "patterns", "match", "--envelope", "syslog", "--trusted"]
    argv += ["--prefix", prefix, "--json", str(rsyslogd)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    event = json.loads(out.splitlines()[0])["event"]
    assert (event["src"], event["proto"], event["dpt"]) == ("198.18.0.2", "UDP", PORT)
