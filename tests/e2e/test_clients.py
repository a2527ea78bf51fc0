"""Other clients and IPv6 open the port on the real kernel (issue 5/7, scenario 2).

docs/client.md lists the clients that work: knockd's `knock`, OpenBSD `nc -u`
and bash's `/dev/udp` for UDP steps (the TCP step then comes from `logknock
knock`). Each case is the list of commands the client namespace runs, with
the stdin each one gets.
"""

from __future__ import annotations

import pytest
from e2ecommon import CLIENT4, CLIENT6, SERVER4, SSH, logknock_argv, poll, wait_past
from e2elab import MakeLab

SSH_PORT = 2222
Command = tuple[list[str], bytes | None]


def logknock_tcp(step: str) -> Command:
    return [*logknock_argv(), "knock", SERVER4, step], None


def nc_udp(port: str) -> Command:
    return ["nc", "-u", "-w0", SERVER4, port], b"x"


def bash_udp(port: str) -> Command:
    return ["bash", "-c", f"echo x > /dev/udp/{SERVER4}/{port}"], None


CLIENTS: dict[str, list[Command]] = {
    "knockd-knock": [(["knock", "-d", "100", SERVER4, "7000:udp", "8500:udp", "7600:tcp"], None)],
    "nc-u": [nc_udp("7000"), nc_udp("8500"), logknock_tcp("7600/tcp")],
    "bash-dev-udp": [bash_udp("7000"), bash_udp("8500"), logknock_tcp("7600/tcp")],
}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_other_clients_open_the_port(make_lab: MakeLab, client: str) -> None:
    lab = make_lab()
    assert lab.refuses(SSH_PORT)
    for argv, stdin in CLIENTS[client]:
        lab.client(argv, input=stdin)
    lab.expected += len(SSH)
    assert lab.connects(SSH_PORT, within=2.0), "no connection within 2 s of the knock"
    assert lab.grant("ssh")["src"] == CLIENT4
    lab.settle()  # one logged packet per step: no client sent a knock twice


def test_ipv6_knock_opens_then_expires(make_lab: MakeLab) -> None:
    lab = make_lab(open_for="3s")
    assert lab.refuses(SSH_PORT, src=CLIENT6)
    lab.knock(*SSH, family=6)
    assert lab.connects(SSH_PORT, src=CLIENT6, within=2.0), "no IPv6 connection within 2 s"
    grant = lab.grant("ssh", src=CLIENT6)
    assert (CLIENT6, "tcp", SSH_PORT) in lab.elements(family=6)
    assert lab.refuses(SSH_PORT, src=CLIENT4), "the IPv6 grant opened the port to IPv4 too"
    wait_past(grant["expires"])
    poll(lambda: lab.no_grant(CLIENT6), "the daemon to close the IPv6 grant")
    assert lab.refuses(SSH_PORT, src=CLIENT6)
    assert (CLIENT6, "tcp", SSH_PORT) not in lab.elements(family=6)
