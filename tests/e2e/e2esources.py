"""Where the daemon under test reads the kernel's lines: the source kinds of the lab.

- `journal`: the systemd journal (a journald runs: tests/journald.py's fixture).
- `kmsg`: /dev/kmsg.
- `file`: a file that an rsyslogd the test starts writes with imklog alone
  (`$inputname == "imklog"`, facility kern and our prefix: the condition of
  packaging/rsyslog/logknock.conf), read with `trust: kernel-only`.
  The same rsyslogd writes everything it receives to `all.log`, with the
  input that received it in front, so a forged-line test can prove that its
  line reached rsyslog and stayed out of the kernel-only file. Besides imklog
  it listens on a socket of its own (`log.sock`, as rsyslog's /dev/log on a
  host without journald) and reads the journal (imjournal, as journald's
  forwarding to rsyslog would deliver it on Debian).

imklog reads /proc/kmsg, which takes what it reads away: only one reader can
work, so the file kind skips its test while another rsyslogd runs, and stops
its own by pid.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from logknock.lab import wait_until

RSYSLOGD = "/usr/sbin/rsyslogd"
KINDS = ("journal", "kmsg", "file")

RSYSLOG_CONF = """\
global(workDirectory="{work}")
module(load="imklog")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" RateLimit.Interval="0")
module(load="imjournal" StateFile="{work}/imjournal.state" IgnorePreviousMessages="on"
       RateLimit.Interval="0")
template(name="withInput" type="list") {{
    property(name="inputname")
    constant(value=" ")
    property(name="timestamp" dateFormat="rfc3339")
    constant(value=" ")
    property(name="hostname")
    constant(value=" ")
    property(name="syslogtag")
    property(name="msg" spIfNo1stSp="on")
    property(name="msg" dropLastLf="on")
    constant(value="\\n")
}}
if $inputname == "imklog" and $syslogfacility-text == "kern" and $msg contains "{prefix}" then {{
    action(type="omfile" file="{kernel}" template="RSYSLOG_FileFormat")
}}
action(type="omfile" file="{all}" template="withInput")
"""


def other_rsyslogd() -> list[int]:
    """Pids of rsyslogd processes running now."""
    found = subprocess.run(["pgrep", "-x", "rsyslogd"], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split()]


class Rsyslog:
    """An rsyslogd in the foreground (`-n`) with the configuration above."""

    def __init__(self, work: Path, sockets: Path, prefix: str) -> None:
        self.work = work
        self.socket = sockets / "log.sock"  # in a folder every user can reach
        self.kernel_log = work / "kernel.log"
        self.all_log = work / "all.log"
        self.conf = work / "rsyslog.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        text = RSYSLOG_CONF.format(work=work, socket=self.socket, prefix=prefix,
                                   kernel=self.kernel_log, all=self.all_log)  # fmt: skip
        self.conf.write_text(text)
        self.kernel_log.touch(mode=0o600)

    def start(self) -> None:
        running = other_rsyslogd()
        if running:  # the system's own, or another test run's: not ours to stop
            pytest.skip(f"another rsyslogd runs (pids {running}): imklog cannot share /proc/kmsg")
        argv = [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.work / "rsyslogd.pid")]
        with (self.work / "rsyslogd.err").open("ab") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        wait_until(self._listening, "rsyslogd's socket", timeout=10)

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"rsyslogd exited {self.proc.returncode}: {self.errors()}")
        return self.socket.exists()

    def errors(self) -> str:
        path = self.work / "rsyslogd.err"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def lines(self, which: Path, *markers: str) -> list[str]:
        """The lines of `which` (kernel_log or all_log) that contain every marker."""
        if not which.exists():
            return []
        text = which.read_text(errors="replace")
        return [line for line in text.splitlines() if all(m in line for m in markers)]


def source_yaml(kind: str, rsyslog: Rsyslog | None) -> str:
    """The `source:` value of the daemon's configuration for `kind`."""
    if kind == "file":
        assert rsyslog is not None
        return f"[{{file: {rsyslog.kernel_log}, trust: kernel-only, envelope: syslog}}]"
    return kind


def status_key(kind: str, rsyslog: Rsyslog | None) -> str:
    """The source's name in `logknock status --json`."""
    if kind == "file":
        assert rsyslog is not None
        return f"file:{rsyslog.kernel_log}"
    return kind
