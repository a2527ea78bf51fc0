"""The client's configuration: hosts, and named sequences to knock on them.

    load_client(path) -> ClientConfig    ConfigError lists every problem as file:line:column
    default_path() -> str                $XDG_CONFIG_HOME/logknock/client.yaml

It is read with the server's machinery (config_yaml, config_reader,
config_kinds), so steps, durations, the `totp:` mapping, secret files and
one-time files are spelled and checked exactly as in the server's file, and
a sequence can be copied from one to the other. Paths may start with `~`;
relative paths count from the folder of the file. docs/client.md has the format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import config_values as values
from .client import check_payload, sendable
from .config_kinds import read_one_time, read_totp
from .config_reader import Fields, Reader, suggest
from .config_yaml import Node, parse
from .errors import ConfigError, Location
from .schema import Step, Totp

TOP_KEYS = ("hosts", "sequences")
HOST_KEYS = ("address", "family")
SEQUENCE_KEYS = ("host", "knock", "one_time", "totp", "delay", "payload", "payload_file")
KINDS = ("knock", "one_time", "totp")


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    address: str  # a name to resolve or an address
    family: int | None = None  # 4, 6, or None for the first address found


@dataclass(frozen=True, slots=True)
class ClientSequence:
    """What to knock, on which host; exactly one of knock, one_time_file, totp."""

    name: str
    host: Host
    knock: tuple[Step, ...] = ()
    one_time_file: str | None = None
    totp: Totp | None = None
    delay: float | None = None  # None: the command's default
    payload: bytes | None = None  # None: the command's default (an empty datagram)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    path: str
    hosts: tuple[Host, ...] = ()
    sequences: tuple[ClientSequence, ...] = ()

    def sequence(self, name: str) -> ClientSequence | None:
        return next((s for s in self.sequences if s.name == name), None)


class ClientReader(Reader):
    """The server's reader, except that paths may start with `~`."""

    def resolve(self, value: object) -> str:
        return super().resolve(os.path.expanduser(values.text(value)))


def default_path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(base, "logknock", "client.yaml")


def load_client(path: str) -> ClientConfig:
    """The client configuration in file `path`; ConfigError lists every problem."""
    root, problems = parse(_read_text(path), path)
    r = ClientReader(path, problems)
    f = r.fields(root, TOP_KEYS, "the client configuration")
    hosts = _hosts(r, f.get("hosts"))
    sequences = _sequences(r, f.get("sequences"), {host.name: host for host in hosts})
    if problems:
        raise ConfigError(sorted(problems, key=lambda problem: _order(path, problem[0])))
    return ClientConfig(path, hosts, sequences)


def _order(path: str, loc: Location) -> tuple[bool, str, int, int]:
    """Problems in the client file first, each file's in text order."""
    return loc.path != path, loc.path, loc.line or 0, loc.column or 0


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8")
    except OSError as exc:
        raise ConfigError([(Location(path), f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([(Location(path), f"not UTF-8 text (byte {exc.start})")]) from None


def _mapping(r: Reader, node: Node | None, what: str) -> dict[str, Node]:
    if node is None or node.value is None:
        return {}
    if not isinstance(node.value, dict):
        r.error(node.loc, f"{what} must be a mapping from names to {what}")
        return {}
    return dict(node.value)


def _hosts(r: Reader, node: Node | None) -> tuple[Host, ...]:
    return tuple(_host(r, name, child) for name, child in _mapping(r, node, "hosts").items())


def _host(r: Reader, name: str, node: Node) -> Host:
    """`name: ADDRESS`, or `name: {address: ADDRESS, family: 4}`."""
    if isinstance(node.value, str):
        return Host(name, node.value)
    f = r.fields(node, HOST_KEYS, f"host {name}")
    if "address" not in f:
        r.error(node.key_loc, f"host {name}: needs address")
    return Host(name, r.get(f, "address", values.text, ""), r.get(f, "family", _family, None))


def _family(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in (4, 6):
        raise ValueError(f"expected 4 or 6, not {value!r}")
    return value


def _sequences(r: Reader, node: Node | None, hosts: dict[str, Host]) -> tuple[ClientSequence, ...]:
    found = []
    for name, child in _mapping(r, node, "sequences").items():
        try:
            values.sequence_name(name)
        except ValueError as exc:
            r.error(child.key_loc, str(exc))
        sequence = _sequence(r, name, child, hosts)
        if sequence is not None:
            found.append(sequence)
    return tuple(found)


def _sequence(r: Reader, name: str, node: Node, hosts: dict[str, Host]) -> ClientSequence | None:
    f = r.fields(node, SEQUENCE_KEYS, f"sequence {name}")
    host = _sequence_host(r, name, node, f, hosts)
    kinds = [kind for kind in KINDS if kind in f]
    if len(kinds) != 1:
        r.error(node.key_loc, f"sequence {name}: needs exactly one of knock, one_time or totp")
    if host is None or len(kinds) != 1:
        return None
    return ClientSequence(
        name,
        host,
        knock=_knock(r, f),
        one_time_file=read_one_time(r, f.get("one_time"))[0],
        totp=read_totp(r, f.get("totp")),
        delay=r.get(f, "delay", values.duration(0, strict=False), None),
        payload=_payload(r, name, node, f),
    )


def _sequence_host(
    r: Reader, name: str, node: Node, f: Fields, hosts: dict[str, Host]
) -> Host | None:
    if "host" not in f:
        r.error(node.key_loc, f"sequence {name}: needs host")
        return None
    wanted = f["host"].value
    if isinstance(wanted, str) and wanted in hosts:
        return hosts[wanted]
    hint = suggest(wanted, hosts) if isinstance(wanted, str) else ""
    r.error(f["host"].loc, f"host: '{wanted}' is not a host listed under hosts{hint}")
    return None


def _knock(r: Reader, f: Fields) -> tuple[Step, ...]:
    steps = r.items(f, "knock", lambda value: sendable(values.step(value)))
    if steps == () and "knock" in f:
        r.error(f["knock"].loc, "knock: needs at least one step")
    return steps or ()


def _payload(r: Reader, name: str, node: Node, f: Fields) -> bytes | None:
    if "payload" in f and "payload_file" in f:
        r.error(node.key_loc, f"sequence {name}: payload and payload_file exclude each other")
    if "payload" in f:
        return r.get(f, "payload", lambda v: check_payload(values.text(v).encode()), None)
    if "payload_file" not in f:
        return None
    path = r.get(f, "payload_file", r.resolve, "")
    data = r.read(f["payload_file"], path, "payload_file") if path else None
    if data is None:
        return None
    try:
        return check_payload(data)
    except ValueError as exc:
        r.error(f["payload_file"].loc, f"payload_file: {exc}")
        return None
