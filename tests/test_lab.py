"""The namespace lab: it creates what it promises and always removes it again."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from logknock.lab import (
    NF_LOG_ALL_NETNS,
    KernelLog,
    Lab,
    LabError,
    delete_namespace,
    list_namespaces,
    nf_log_all_netns,
    remove_leftovers,
    wait_until,
)

PREFIX = "lktest"


def _netns_usable() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    return subprocess.run(["ip", "netns", "list"], capture_output=True, check=False).returncode == 0


needs_lab = pytest.mark.skipif(not _netns_usable(), reason="needs root and `ip netns`")

CONNECT = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
with socket.socket(family, socket.SOCK_STREAM) as sock:
    sock.settimeout(5)
    try:
        sock.connect((sys.argv[1], 9))
    except ConnectionRefusedError:
        print("refused")
"""


def _ours(lab: Lab) -> set[str]:
    return {lab.server_ns, lab.client_ns} & set(list_namespaces())


@pytest.mark.root
@needs_lab
def test_lab_exists_inside_the_block_and_is_gone_after() -> None:
    with Lab(PREFIX) as lab:
        assert _ours(lab) == {lab.server_ns, lab.client_ns}
        links = lab.run_in(lab.server_ns, ["ip", "-o", "link", "show", lab.server_if]).stdout
        assert b"LOWER_UP" in links
    assert _ours(lab) == set()


@pytest.mark.root
@needs_lab
@pytest.mark.parametrize("family", [4, 6])
def test_both_families_reach_the_server_at_once(family: int) -> None:
    """A refused connect is a round trip: the address works without waiting for DAD."""
    with Lab(PREFIX) as lab:
        server = lab.server_v4 if family == 4 else lab.server_v6
        proc = lab.run_in(lab.client_ns, [sys.executable, "-c", CONNECT, str(server)])
        assert proc.stdout.strip() == b"refused"


@pytest.mark.root
@needs_lab
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_exception_in_the_block_still_removes_the_lab(error: type[BaseException]) -> None:
    with pytest.raises(error), Lab(PREFIX) as lab:
        assert _ours(lab)
        raise error("boom")
    assert _ours(lab) == set()


@pytest.mark.root
@needs_lab
def test_a_failed_setup_leaves_nothing_behind() -> None:
    lab = Lab(PREFIX, server_if="x" * 20)  # longer than IFNAMSIZ: `ip link add` fails
    with pytest.raises(LabError, match="link add"), lab:
        pass
    assert _ours(lab) == set()
    lab.close()  # idempotent


@pytest.mark.root
@needs_lab
def test_parallel_labs_get_their_own_names() -> None:
    with Lab(PREFIX) as first, Lab(PREFIX) as second:
        assert {first.server_ns, first.client_ns}.isdisjoint({second.server_ns, second.client_ns})
        assert len(_ours(first) | _ours(second)) == 4


@pytest.fixture
def dead_run_namespace() -> Iterator[str]:
    dead_pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process has it
    name = f"{PREFIX}-{dead_pid}-{secrets.token_hex(3)}-server"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        delete_namespace(name)


@pytest.mark.root
@needs_lab
def test_remove_leftovers_takes_dead_runs_only(dead_run_namespace: str) -> None:
    with Lab(PREFIX) as alive:
        removed = remove_leftovers(PREFIX)
        assert removed == [dead_run_namespace]
        assert dead_run_namespace not in list_namespaces()
        assert _ours(alive) == {alive.server_ns, alive.client_ns}


def test_wait_until_gives_up_at_the_deadline() -> None:
    with pytest.raises(LabError, match="never ready"):
        wait_until(lambda: False, "never ready", timeout=0.05)


@pytest.fixture
def sysctl_at_zero() -> Iterator[None]:
    """nf_log_all_netns at 0 for the test, its own value again afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to write the sysctl")
    original = NF_LOG_ALL_NETNS.read_text()
    NF_LOG_ALL_NETNS.write_text("0\n")
    try:
        yield
    finally:
        NF_LOG_ALL_NETNS.write_text(original)


def _sysctl() -> str:
    return NF_LOG_ALL_NETNS.read_text().strip()


@pytest.mark.root
@pytest.mark.usefixtures("sysctl_at_zero")
def test_nf_log_all_netns_is_set_inside_and_restored_after(tmp_path: Path) -> None:
    with nf_log_all_netns(tmp_path / "state"):
        assert _sysctl() == "1"
    assert _sysctl() == "0"


@pytest.mark.root
@pytest.mark.usefixtures("sysctl_at_zero")
def test_nf_log_all_netns_is_restored_even_after_an_exception(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), nf_log_all_netns(tmp_path / "state"):
        raise KeyboardInterrupt
    assert _sysctl() == "0"


@pytest.mark.root
@pytest.mark.usefixtures("sysctl_at_zero")
def test_overlapping_runs_restore_when_the_last_one_leaves(tmp_path: Path) -> None:
    first, second = nf_log_all_netns(tmp_path / "state"), nf_log_all_netns(tmp_path / "state")
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert _sysctl() == "1", "the second run still needs it"
    second.__exit__(None, None, None)
    assert _sysctl() == "0"


@pytest.mark.root
@pytest.mark.usefixtures("sysctl_at_zero")
def test_a_crashed_run_s_saved_value_is_restored_by_the_next(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("0\n")  # what a crashed run saved before it set 1
    NF_LOG_ALL_NETNS.write_text("1\n")
    with nf_log_all_netns(state):
        pass
    assert _sysctl() == "0"


@pytest.mark.root
@needs_lab
def test_kernel_log_returns_only_records_written_after_it_opened() -> None:
    token = secrets.token_hex(8)
    with open("/dev/kmsg", "wb", buffering=0) as kmsg:
        kmsg.write(f"lktest old {token}\n".encode())
        with KernelLog() as klog:
            kmsg.write(f"lktest new {token}\n".encode())
            found = klog.collect(lambda record: token.encode() in record, 1, timeout=5)
    assert len(found) == 1
    assert found[0].endswith(f";lktest new {token}".encode())
    assert int(found[0].split(b",")[0]) >= 8, "a userspace write never has facility 0"
