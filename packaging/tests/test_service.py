"""The installed logknock.service under a real systemd (see systemd_lab.py).

Run by packaging/ci.sh after the package is installed, as root (`-P`: the
installed package is the `logknock` these tests import):

    python3 -P -m pytest -p no:cacheprovider packaging/tests

Without root, the package or systemd these tests skip, unless
LOGKNOCK_REQUIRE_SERVICE_LAB=1 (as ci.sh sets it) turns the skip into a failure.
"""

from __future__ import annotations

import grp
import gzip
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from systemd_lab import SYSTEMD, SystemdLab

# A prefix of its own: other logknocks on this machine ignore the lab's knocks.
PREFIX = f"lksvc{secrets.token_hex(3)}: "
CONFIG = f"""\
source: journal
prefix: "{PREFIX}"
sequences:
  ssh:
    knock: [7127/udp, 9311/tcp, 8243/udp]
    open: [22/tcp]
    open_for: 30s
"""
MANUAL = Path("/usr/share/man/man8/logknock.8.gz")
UNIT = Path("/lib/systemd/system/logknock.service")
MAX_EXPOSURE = 1.5
CAP_NET_ADMIN = 1 << 12
CAP_SYSLOG = 1 << 34
ADDRESS = "198.18.0.7"
# The client namespace the knock test makes inside the lab (veth in the lab's own netns).
SERVER, CLIENT = "198.19.0.1", "198.19.0.2"
CLIENT_NET = (
    "ip netns add client",
    "ip link add veth-s type veth peer name veth-c netns client",
    f"ip addr add {SERVER}/24 dev veth-s",
    "ip link set veth-s up",
    f"ip -n client addr add {CLIENT}/24 dev veth-c",
    "ip -n client link set veth-c up",
    "ip -n client link set lo up",
)


def lab_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not Path(SYSTEMD).exists() or shutil.which("nsenter") is None:
        return "needs systemd and nsenter"
    owner = subprocess.run(["dpkg", "-S", "/usr/bin/logknock"], capture_output=True, check=False)
    if owner.returncode != 0:
        return "needs the logknock package installed"
    return None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdLab]:
    missing = lab_missing()
    if missing and os.environ.get("LOGKNOCK_REQUIRE_SERVICE_LAB") == "1":
        pytest.fail(f"the service lab cannot run here: {missing}")
    if missing:
        pytest.skip(missing)
    folder = tmp_path_factory.mktemp("systemd-lab")
    lab = SystemdLab(folder, CONFIG, rendered_rules(folder))
    from logknock.lab import nf_log_all_netns  # the installed package's, shared with others

    try:
        with nf_log_all_netns():  # the lab's network namespace logs to the kernel log
            lab.start()
            lab.wait_for("logknock.service to be running", lambda: running(lab))
            yield lab
    finally:
        lab.stop()


def rendered_rules(folder: Path) -> str:
    """The rules `logknock firewall render` writes for CONFIG, as an operator loads them."""
    (folder / "render.yaml").write_text(CONFIG)
    argv = ["logknock", "firewall", "render", "--config", str(folder / "render.yaml")]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def running(lab: SystemdLab) -> bool:
    return lab.show("SubState") == "running"


def main_pid(lab: SystemdLab) -> int:
    return int(lab.show("MainPID"))


def proc_status(lab: SystemdLab, pid: int) -> dict[str, str]:
    text = lab.run("cat", f"/proc/{pid}/status").stdout
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def status(lab: SystemdLab) -> dict[str, object]:
    answer: dict[str, object] = json.loads(lab.run("logknock", "status", "--json").stdout)
    return answer


def grants(lab: SystemdLab) -> str:
    return lab.run("nft", "list", "set", "inet", "logknock", "grants4").stdout


def cursor(lab: SystemdLab) -> str:
    out = lab.run("journalctl", "-u", "logknock", "-n", "0", "--show-cursor").stdout
    return out.strip().rpartition("-- cursor: ")[2]


def journal_after(lab: SystemdLab, mark: str) -> str:
    argv = ["journalctl", "--no-pager", "-o", "cat", "-u", "logknock", f"--after-cursor={mark}"]
    return lab.run(*argv, check=False).stdout


# --- start ---------------------------------------------------------------------------


def test_start_runs_check_first_and_waits_for_ready(lab: SystemdLab) -> None:
    journal = lab.journal()
    assert "configuration /etc/logknock/logknock.yaml is usable (1 sequence, 0 warnings)" in journal
    assert journal.index("is usable") < journal.index("logknock started")
    assert lab.show("StatusText") == "1 sequences, 0 open grants, sources journal"


def test_runs_as_its_user_with_net_admin_alone(lab: SystemdLab) -> None:
    fields = proc_status(lab, main_pid(lab))
    user = pwd.getpwnam("logknock")
    assert fields["Uid"].split() == [str(user.pw_uid)] * 4
    assert str(grp.getgrnam("systemd-journal").gr_gid) in fields["Groups"].split()
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[cap], 16) == CAP_NET_ADMIN, cap
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"


def test_sees_the_system_read_only_but_its_own_folders(lab: SystemdLab) -> None:
    mounts = lab.run("cat", f"/proc/{main_pid(lab)}/mountinfo").stdout.splitlines()
    options = {line.split()[4]: line.split()[5].split(",") for line in mounts}
    assert "ro" in options["/"]
    assert "rw" in options["/var/lib/logknock"]
    assert "rw" in options["/run/logknock"]


def exposure(output: str) -> float:
    found = re.search(r"Overall exposure level for logknock\.service: ([0-9.]+)", output)
    assert found is not None, output
    return float(found.group(1))


def test_exposure_of_the_running_service_is_the_offline_score(lab: SystemdLab) -> None:
    online = lab.run("systemd-analyze", "security", "--no-pager", "logknock.service").stdout
    argv = ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)]
    offline = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert exposure(online) == exposure(offline) <= MAX_EXPOSURE


# --- hooks ---------------------------------------------------------------------------


def test_a_hook_runs_nft_inside_the_sandbox(lab: SystemdLab) -> None:
    lab.run("logknock", "open", "-s", "ssh", "--for", "30s", ADDRESS)
    lab.wait_for("the grant in the nft set", lambda: f"{ADDRESS} . tcp . 22" in grants(lab))
    lab.run("logknock", "close", ADDRESS)
    lab.wait_for("the grant to leave the set", lambda: ADDRESS not in grants(lab))
    assert "failed" not in lab.journal()


def test_a_knock_through_the_kernel_log_and_the_journal_opens(lab: SystemdLab) -> None:
    """The whole way, in the sandbox: firewall log line, journal, daemon, hook, nft set."""
    for command in CLIENT_NET:
        lab.run(*command.split())
    knock = ["logknock", "knock", "--delay", "300ms", SERVER, "7127/udp", "9311/tcp", "8243/udp"]
    lab.run("ip", "netns", "exec", "client", *knock)
    lab.wait_for("the knocked grant", lambda: f"{CLIENT} . tcp . 22" in grants(lab))
    lab.run("logknock", "close", CLIENT)


# --- reload --------------------------------------------------------------------------


def test_reload_checks_then_sends_sighup(lab: SystemdLab) -> None:
    pid, mark = main_pid(lab), cursor(lab)
    lab.run("systemctl", "reload", "logknock")
    lab.wait_for("the reload", lambda: "configuration reloaded" in journal_after(lab, mark))
    assert main_pid(lab) == pid


def test_reload_refuses_a_broken_configuration(lab: SystemdLab) -> None:
    pid, mark = main_pid(lab), cursor(lab)
    with lab.config.open("w") as config:  # the same inode: the bind mount sees it
        config.write("sequences: [ssh]\n")
    try:
        refused = lab.run("systemctl", "reload", "logknock", check=False)
    finally:
        lab.config.write_text(CONFIG)
    assert refused.returncode != 0
    assert "sequences must be a mapping" in journal_after(lab, mark)
    assert "configuration reloaded" not in journal_after(lab, mark)
    assert (main_pid(lab), lab.show("SubState")) == (pid, "running")


# --- watchdog and restart ------------------------------------------------------------


def test_the_watchdog_is_fed(lab: SystemdLab) -> None:
    assert lab.show("WatchdogUSec") == "30s"
    first = lab.show("WatchdogTimestampMonotonic")
    lab.wait_for("a second watchdog ping", lambda: lab.show("WatchdogTimestampMonotonic") != first)


def test_a_crash_restarts_it(lab: SystemdLab) -> None:
    pid, restarts = main_pid(lab), int(lab.show("NRestarts"))
    lab.run("kill", "-KILL", str(pid))
    lab.wait_for("the restart", lambda: int(lab.show("NRestarts")) == restarts + 1)
    lab.wait_for("the restarted daemon", lambda: running(lab))
    assert main_pid(lab) != pid


# --- /dev/kmsg -----------------------------------------------------------------------


def kmsg_source(lab: SystemdLab) -> dict[str, object]:
    sources = status(lab)["sources"]
    assert isinstance(sources, dict)
    source: dict[str, object] = sources["kmsg"]
    return source


def manual_drop_in() -> str:
    """The drop-in for /dev/kmsg exactly as the installed logknock(8) gives it."""
    roff = gzip.decompress(MANUAL.read_bytes()).decode()
    block = roff.partition(".EX\n[Service]\n")[2].partition(".EE\n")[0]
    assert "CAP_SYSLOG" in block, "logknock(8) no longer shows the kmsg drop-in"
    return "[Service]\n" + block.replace("\\-", "-")


def restart_with_kmsg(lab: SystemdLab) -> None:
    lab.config.write_text(CONFIG.replace("source: journal", "source: kmsg"))
    lab.run("systemctl", "daemon-reload")
    lab.run("systemctl", "restart", "logknock")
    lab.wait_for("the kmsg source", lambda: running(lab) and "kmsg" in lab.show("StatusText"))


def test_kmsg_needs_the_drop_in_the_manual_gives(lab: SystemdLab) -> None:
    drop_in = Path("/etc/systemd/system/logknock.service.d/kmsg.conf")
    try:
        restart_with_kmsg(lab)
        lab.wait_for("the refused kmsg", lambda: kmsg_source(lab)["failure"] is not None)
        (lab.folder / "kmsg.conf").write_text(manual_drop_in())
        lab.run("mkdir", "-p", str(drop_in.parent))
        lab.run("cp", str(lab.folder / "kmsg.conf"), str(drop_in))
        restart_with_kmsg(lab)
        # A quiet kernel may log nothing for a long time, so no record need come:
        # without the drop-in the failure showed within a second (above); with it,
        # none may show in three (the source retries failures every second).
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            assert kmsg_source(lab)["failure"] is None
            time.sleep(0.2)
        caps = proc_status(lab, main_pid(lab))
        assert int(caps["CapEff"], 16) == int(caps["CapBnd"], 16) == CAP_NET_ADMIN | CAP_SYSLOG
    finally:
        lab.run("rm", "-rf", str(drop_in.parent))
        lab.config.write_text(CONFIG)
        lab.run("systemctl", "daemon-reload")
        lab.run("systemctl", "restart", "logknock")
