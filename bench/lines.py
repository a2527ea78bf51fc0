"""Log lines as the kernel, syslog daemons and journald write them, for genlog.

`Packets` renders kernel netfilter LOG messages (IPv6 addresses uncompressed,
a trailing space, UDP's two LEN= fields, as the kernel prints them), `noise`
the ordinary lines of a server's log, and `Envelope` wraps a message the way
a log source does: traditional syslog (rsyslog's RSYSLOG_TraditionalFileFormat),
RFC 3339 syslog (Debian 12's rsyslog default) or `journalctl -o json`.

Addresses come only from 198.18.0.0/15 and 2001:db8::/32.
"""

from __future__ import annotations

import ipaddress
import json
import random
import time

FORMATS = ("traditional", "rfc3339", "journal")
SERVER_V4 = "198.18.0.1"
SERVER_V6 = ipaddress.IPv6Address("2001:db8::1").exploded
MAC_V4 = "52:54:00:12:34:56:52:54:00:ab:cd:ef:08:00"
MAC_V6 = "52:54:00:12:34:56:52:54:00:ab:cd:ef:86:dd"
HOST = "gw"
UPTIME = 83325.0  # seconds since boot at the log's first line: kernel stamps count from boot
BOOT_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
MACHINE_ID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
FOREIGN_PREFIXES = ("[UFW BLOCK] ", "[UFW AUDIT] ", "FINAL_REJECT: ", "nft-drop: ")
SERVICES = ("sshd", "CRON", "systemd", "postfix/smtpd", "dhclient", "nginx")


class Packets:
    """Kernel LOG messages of single packets, with realistic varying fields."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def message(self, prefix: str, src: str, proto: str, dport: int, flags: str = "SYN") -> str:
        v6 = ":" in src
        head = f"{prefix}IN=eth0 OUT= MAC={MAC_V6 if v6 else MAC_V4} "
        dst = SERVER_V6 if v6 else SERVER_V4
        body = self._transport(proto, dport, flags)
        return f"{head}SRC={src} DST={dst} {self._ip(v6, proto)}{body}"

    def _ip(self, v6: bool, proto: str) -> str:
        rng = self.rng
        size = (40 if v6 else 20) + (20 if proto == "tcp" else 9)
        if v6:
            return (
                f"LEN={size} TC=0 HOPLIMIT={rng.randint(40, 64)} FLOWLBL={rng.randrange(1 << 20)} "
            )
        df = "DF " if rng.random() < 0.8 else ""
        ttl, ident = rng.randint(40, 64), rng.randrange(65536)
        return f"LEN={size} TOS=0x00 PREC=0x00 TTL={ttl} ID={ident} {df}"

    def _transport(self, proto: str, dport: int, flags: str) -> str:
        spt = self.rng.randint(32768, 60999)
        if proto == "tcp":
            window = self.rng.choice((64240, 65535, 29200))
            return f"PROTO=TCP SPT={spt} DPT={dport} WINDOW={window} RES=0x00 {flags} URGP=0 "
        return f"PROTO=UDP SPT={spt} DPT={dport} LEN=9 "

    def foreign(self, src: str) -> str:
        """A hit logged by someone else's firewall rule (ufw, firewalld, ...)."""
        rng = self.rng
        proto = rng.choice(("tcp", "tcp", "udp"))
        port = rng.choice((22, 23, 80, 443, 445, 3389, 5060, 8080, rng.randint(1, 65535)))
        return self.message(rng.choice(FOREIGN_PREFIXES), src, proto, port)


def noise(rng: random.Random, addresses: list[str]) -> tuple[str, str]:
    """An ordinary line: (syslog tag, message); tag "kernel" for kernel chatter."""
    pick = rng.randrange(10)
    peer, port, pid = rng.choice(addresses), rng.randint(1024, 65535), rng.randint(300, 99999)
    if pick < 3:
        user = rng.choice(("root", "admin", "ubuntu", "test", "oracle"))
        return (
            f"sshd[{pid}]",
            f"Failed password for invalid user {user} from {peer} port {port} ssh2",
        )
    if pick == 3:
        return f"sshd[{pid}]", f"Connection closed by {peer} port {port} [preauth]"
    if pick == 4:
        return f"CRON[{pid}]", "(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)"
    if pick == 5:
        unit = rng.choice(("apt-daily.service", "logrotate.service", "man-db.service"))
        return "systemd[1]", f"Started {unit} - Daily job {rng.randrange(1000)}."
    if pick == 6:
        return f"postfix/smtpd[{pid}]", f"connect from unknown[{peer}]"
    if pick == 7:
        return f"dhclient[{pid}]", f"DHCPACK of 198.18.0.1 from 198.18.0.254 (xid=0x{pid:08x})"
    if pick == 8:
        return "kernel", f"TCP: request_sock_TCP: Possible SYN flooding on port {port}."
    return "kernel", f"usb 1-1: new high-speed USB device number {pid % 128} using xhci_hcd"


class Envelope:
    """Wraps messages in one log format; `start` is the epoch time of the first line."""

    def __init__(self, fmt: str, start: float) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
        self.fmt, self.boot = fmt, start - UPTIME
        self._second = (-1, "")  # the last whole second formatted, and its text
        self._cursor = 0

    def line(self, at: float, tag: str, message: str) -> str:
        if self.fmt == "journal":
            return self._journal(at, tag, message)
        if tag == "kernel":
            message = f"[{at - self.boot:12.6f}] {message}"
        return f"{self._stamp(at)} {HOST} {tag}: {message}"

    def _stamp(self, at: float) -> str:
        whole = int(at)
        if self._second[0] != whole:
            pattern = "%b %e %H:%M:%S" if self.fmt == "traditional" else "%Y-%m-%dT%H:%M:%S"
            self._second = (whole, time.strftime(pattern, time.gmtime(whole)))
        if self.fmt == "traditional":
            return self._second[1]
        return f"{self._second[1]}.{int((at - whole) * 1e6):06d}+00:00"

    def _journal(self, at: float, tag: str, message: str) -> str:
        self._cursor += 1
        usec, mono = int(at * 1e6), int((at - self.boot) * 1e6)
        head = (
            f'{{"__CURSOR":"s=6c1b0d3e2f8a4b6c9d0e1f2a3b4c5d6e;i={self._cursor:x};b={BOOT_ID};'
            f'm={mono:x};t={usec:x};x=1a2b3c4d5e6f7a8b","__REALTIME_TIMESTAMP":"{usec}",'
            f'"__MONOTONIC_TIMESTAMP":"{mono}","_BOOT_ID":"{BOOT_ID}",'
            f'"_MACHINE_ID":"{MACHINE_ID}","_HOSTNAME":"{HOST}",'
        )
        text = json.dumps(message)
        if tag == "kernel":
            return (
                f'{head}"_TRANSPORT":"kernel","PRIORITY":"4","SYSLOG_FACILITY":"0",'
                f'"SYSLOG_IDENTIFIER":"kernel","_SOURCE_MONOTONIC_TIMESTAMP":"{mono}",'
                f'"MESSAGE":{text}}}'
            )
        name, _, pid = tag.partition("[")
        return (
            f'{head}"_TRANSPORT":"syslog","PRIORITY":"6","SYSLOG_FACILITY":"4",'
            f'"SYSLOG_IDENTIFIER":"{name}","_PID":"{pid.rstrip("]") or 1}","_UID":"0",'
            f'"_COMM":"{name.split("/")[-1]}","MESSAGE":{text}}}'
        )
