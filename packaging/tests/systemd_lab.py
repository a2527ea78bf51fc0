"""A throwaway systemd, PID 1 of its own namespaces, that runs the installed logknock.service.

The machines logknock is tested on do not run systemd as PID 1, so the unit's
sandbox (user, capabilities, system-call filter, read-only system, notify,
watchdog, restart) would otherwise go untested. `SystemdLab` starts
`/lib/systemd/systemd` in new PID, mount, network, UTS, IPC and cgroup
namespaces, in a cgroup of its own below this process's, with:

- a tmpfs on /run, on /etc/systemd/system and on the generators' folder, so
  nothing of the host's /run is seen and no host unit or generator runs: every
  unit but a short list is masked, and the default target wants only
  logknock.service (journald runs too, its folder set up as at boot);
- a configuration of the test's own bind-mounted over
  /etc/logknock/logknock.yaml;
- an nftables ruleset loaded in its network namespace before systemd starts.

Everything the lab makes goes away with it: `stop()` powers the systemd off,
kills what is left and removes the cgroups. Needs root and the package
installed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

SYSTEMD = "/lib/systemd/systemd"
KEEP = (
    "logknock.service lktest.target sysinit.target basic.target sockets.target timers.target "
    "paths.target slices.target local-fs.target local-fs-pre.target swap.target -.slice "
    "system.slice shutdown.target umount.target final.target poweroff.target "
    "systemd-poweroff.service systemd-journald.service systemd-journald.socket "
    "systemd-journald-dev-log.socket"
)
INNER = r"""#!/bin/sh
# PID 1 of the lab's namespaces until it becomes systemd.
set -eu
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=0755 tmpfs /usr/lib/systemd/system-generators
mount -t tmpfs -o mode=0755 tmpfs /etc/systemd/system
for unit in /usr/lib/systemd/system/* /usr/lib/systemd/system/*.wants/*; do
    name=${unit##*/}
    case $name in *.wants | *.requires | *.d) continue ;; esac
    case " $LAB_KEEP " in *" $name "*) continue ;; esac
    ln -sf /dev/null "/etc/systemd/system/$name"
done
printf '[Unit]\nDescription=logknock lab\nDefaultDependencies=no\nWants=logknock.service\n' \
    > /etc/systemd/system/lktest.target
# What systemd-tmpfiles-setup.service (masked: its --remove would clean the
# host's /tmp) gives journald's folder at boot: the group systemd-journal,
# which new journal files then inherit.
install -d -m 2755 -g systemd-journal /run/log/journal
mount --bind "$LAB_CONFIG" /etc/logknock/logknock.yaml
nft -f "$LAB_NFT"
exec env -i container=logknock-lab PATH=/usr/sbin:/usr/bin:/sbin:/bin "$LAB_SYSTEMD" \
    --system --unit=lktest.target --log-target=console --show-status=no
"""


class SystemdLab:
    def __init__(self, folder: Path, config: str, ruleset: str) -> None:
        self.folder = folder
        self.config = folder / "logknock.yaml"
        self.config.write_text(config)
        (folder / "ruleset.nft").write_text(ruleset)
        (folder / "inner.sh").write_text(INNER)
        self.cgroups: list[Path] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.pid = 0  # systemd's pid, as this process sees it

    def start(self) -> None:
        self.cgroups = make_cgroups(f"logknock-lab-{os.getpid()}")
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LAB_KEEP": KEEP,
            "LAB_CONFIG": str(self.config),
            "LAB_NFT": str(self.folder / "ruleset.nft"),
            "LAB_SYSTEMD": SYSTEMD,
        }
        unshare = ["unshare", "--pid", "--fork", "--mount", "--net", "--uts", "--ipc"]
        argv = [*unshare, "--cgroup", "--mount-proc", "sh", str(self.folder / "inner.sh")]
        with (self.folder / "systemd.log").open("wb") as log:
            # The child must join the cgroups before unshare forks: a fork
            # stays in the cgroup it was born in. No thread runs here.
            self.process = subprocess.Popen(
                argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self._enter,  # noqa: PLW1509
            )
        self.pid = self._child_of(self.process.pid)

    def _enter(self) -> None:
        """In the child before exec: join the lab's cgroups."""
        for folder in self.cgroups:
            (folder / "cgroup.procs").write_text(str(os.getpid()))

    def _child_of(self, pid: int, timeout: float = 10.0) -> int:
        """unshare --fork runs the namespaces' PID 1 as its only child."""
        children = Path(f"/proc/{pid}/task/{pid}/children")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = children.read_text().split() if children.exists() else []
            if found:
                return int(found[0])
            time.sleep(0.05)
        raise RuntimeError(f"no namespace PID 1 under unshare ({self.log()})")

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command inside the lab's namespaces, as root."""
        command = ["nsenter", f"--target={self.pid}", "--all", *argv]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=60)

    def show(self, prop: str, unit: str = "logknock.service") -> str:
        """A property of `unit`; empty while systemd does not answer yet."""
        argv = ("systemctl", "show", f"--property={prop}", "--value", unit)
        return self.run(*argv, check=False).stdout.strip()

    def wait_for(self, what: str, test: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not test():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.journal()}{self.log()}")
            time.sleep(0.2)

    def journal(self, unit: str = "logknock.service") -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", unit, check=False).stdout

    def log(self) -> str:
        path = self.folder / "systemd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.run("systemctl", "poweroff", check=False)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)  # PID 1 of the namespace: all of it dies
                self.process.wait(timeout=10)
        remove_cgroups(self.cgroups)


def make_cgroups(name: str) -> list[Path]:
    """A child cgroup named `name` below ours, in every mounted hierarchy."""
    made = []
    for folder in own_cgroup_folders():
        child = folder / name
        child.mkdir()
        made.append(child)
        _inherit_cpuset(folder, child)
    return made


def _inherit_cpuset(parent: Path, child: Path) -> None:
    """A cgroup v1 cpuset takes no task until it has cpus and mems."""
    for key in ("cpuset.cpus", "cpuset.mems"):
        if (child / key).exists() and not (child / key).read_text().strip():
            (child / key).write_text((parent / key).read_text())


def remove_cgroups(folders: list[Path]) -> None:
    """Deepest first, as rmdir wants; systemd removes its own on poweroff."""
    for top in folders:
        for folder in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if folder.is_dir():
                folder.rmdir()
        top.rmdir()


def own_cgroup_folders() -> list[Path]:
    """Where this process's cgroup is in each mounted hierarchy (v1 and v2)."""
    own: dict[frozenset[str], str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        own[frozenset(controllers.split(",")) - {""}] = path
    names = frozenset().union(*own)
    folders: dict[frozenset[str], Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, fs = line.partition(" - ")
        fstype, _, options = fs.split(" ", 2)
        root, mountpoint = fields.split()[3:5]
        key = frozenset() if fstype == "cgroup2" else frozenset(options.split(",")) & names
        if fstype in ("cgroup", "cgroup2") and key in own and key not in folders:
            folders[key] = Path(mountpoint) / os.path.relpath(own[key], root)
    return list(folders.values())
