"""The matcher: raw line → envelope → prefilter → header → pack pattern → Event.

Every line gets an answer, never an exception: an `Event`, or a `Rejection`
whose code says why not. The codes are stable (fixtures and `patterns match`
name them):

    too-long        the line or its message is over the size limit
    no-prefix       the prefilter found no trace of our prefix (the cheap path)
    invalid-utf8    the line is not UTF-8 text
    not-kernel      the envelope proves someone other than the kernel wrote it
    control-char    the message holds control or invisible formatting characters
    non-ascii       the fields after the prefix are not plain ASCII (the kernel's are)
    no-header       no `IN=... OUT=... ` header: not a netfilter log line
    foreign-prefix  a netfilter line, but logged by someone else's rule
    repeated-key    a key the kernel prints once appears again (a forged field)
    field-order     keys in an order the kernel never prints
    unbalanced      brackets of a quoted packet do not pair up
    truncated       the line stops where the format says more must follow
    no-pattern      no pattern of the pack fits: the format drifted, or it is not ours
    timeout         a pattern took longer than the pack's time limit
    bad-port        a port that is not a plain decimal in 0-65535
    bad-address     an address that is not a valid, canonical IP address
(plus the envelope parser's own codes, see `logknock.envelope`).
"""

from __future__ import annotations

import ipaddress
import operator
import re
import socket
from collections.abc import Callable, Mapping
from typing import Any

from . import envelope as envelopes
from .matcher_literals import required_literals
from .models import Envelope, Event, IPAddress, Match, Origin, Rejection
from .packs import Pack, Pattern

MAX_LINE = 65536
INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
PORT = re.compile(r"(?:0|[1-9][0-9]{0,4})\Z")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
DOTTED = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}\Z")  # what ipaddress takes, no leading zeros
EXPLODED = re.compile(r"[0-9a-f]{4}(?::[0-9a-f]{4}){7}\Z")  # IPv6 as the kernel prints it
Reader = Callable[[str | None], Any]
Read = Callable[[str | None, Reader], Any]
EVENT_GROUPS = ("in", "out", "src", "dst", "proto", "spt", "dpt", "frag")
SHAPES = 1024  # token shapes whose verdict a matcher remembers
VALUES = 4096  # address and port texts whose reading a matcher remembers
PORT_PROTOS = frozenset({"TCP", "UDP", "UDPLITE", "SCTP"})
DEFAULT_PREFIX = "logknock: "


class Matcher:
    """Turns lines into events with one pack, for one log prefix.

    `prefix=None` (or "") accepts any prefix: `patterns test` uses it for
    fixtures of foreign rules; the daemon always has its own prefix.
    """

    def __init__(self, pack: Pack, prefix: str | None = DEFAULT_PREFIX, envelope: str = "auto"):
        self.pack = pack
        self.prefix = prefix or None
        self.envelope = envelope
        self.needle = (self.prefix.rstrip() if self.prefix else "IN=").encode()
        self._ours = self.prefix.rstrip() if self.prefix else None
        self._spec = pack.spec
        self._ranks = {key: n for n, key in enumerate(pack.checks.order)}
        self._shapes: dict[tuple[str, ...], Rejection | None] = {}
        self._patterns = tuple((p, *_group_reader(p), need) for p, need in _discriminators(pack))
        self._values: dict[str, IPAddress | int | Rejection] = {}

    def prefilter(self, raw: bytes) -> bool:
        """The cheap test every line pays: could this line be ours at all?"""
        return self.needle in raw

    def match(self, raw: bytes, trusted: bool = False, envelope: str | None = None) -> Match:
        if len(raw) > MAX_LINE:
            return _reject("too-long", f"{len(raw)} bytes, limit {MAX_LINE}")
        if self.needle not in raw:
            return _reject("no-prefix", f"{self.needle.decode()!r} not in line")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _reject("invalid-utf8", f"byte {exc.start}")
        return self.match_text(text, trusted, envelope)

    def match_text(self, text: str, trusted: bool = False, envelope: str | None = None) -> Match:
        env = envelopes.parse(text, envelope or self.envelope, trusted=trusted)
        if isinstance(env, Rejection):
            return Match(None, None, env)
        if env.origin is Origin.NOT_KERNEL:
            return Match(env, None, Rejection("not-kernel", env.note or ""))
        return self.match_envelope(env)

    def match_envelope(self, env: Envelope) -> Match:
        """Parse an envelope's kernel message; the envelope's origin is not judged here."""
        result = self._parse_message(env.message)
        if isinstance(result, Rejection):
            return Match(env, None, result, pack=self._spec)
        event, pattern = result
        return Match(env, event, None, pack=self._spec, pattern=pattern.id)

    def _parse_message(self, message: str) -> tuple[Event, Pattern] | Rejection:
        problem = self._check_message(message)
        if problem:
            return problem
        header = self.pack.header.search(message)
        if header is None:
            return Rejection("no-header", "no 'IN=... OUT=... ' in the message")
        prefix, body = message[: header.start()], message[header.start() :].rstrip(" ") + " "
        if self._ours is not None and prefix.rstrip() != self._ours:
            return Rejection("foreign-prefix", repr(prefix))
        problem = self._check_body(body)
        if problem:
            return problem
        return self._run_patterns(prefix, body)

    def _check_message(self, message: str) -> Rejection | None:
        if len(message) > self.pack.max_message:
            return Rejection("too-long", f"message of {len(message)} characters")
        if message.isascii() and message.isprintable():
            return None  # the fast answer: INVISIBLE's only ASCII characters are unprintable
        bad = INVISIBLE.search(message)
        if bad:
            return Rejection("control-char", f"U+{ord(bad.group()):04X} at {bad.start()}")
        return None

    def _check_body(self, body: str) -> Rejection | None:
        if not body.isascii():
            return Rejection("non-ascii", "the kernel prints fields in ASCII")
        if " TRUNCATED " in body:  # a whole token: `body` starts with IN= and ends with " "
            return Rejection("truncated", "the kernel could not read the packet header")
        if "[" in body or "(" in body or "]" in body or ")" in body:
            return check_tokens(body, self.pack, self._ranks)
        return self._check_shape(tuple([t.partition("=")[0] for t in body.split(" ") if "=" in t]))

    def _check_shape(self, keys: tuple[str, ...]) -> Rejection | None:
        """`check_tokens` of a body without brackets depends only on its keys in order:
        the verdict of each such shape is worked out once."""
        try:
            return self._shapes[keys]
        except KeyError:
            if len(self._shapes) >= SHAPES:
                self._shapes.clear()
            verdict = check_tokens(" ".join(key + "=" for key in keys), self.pack, self._ranks)
            self._shapes[keys] = verdict
            return verdict

    def _run_patterns(self, prefix: str, body: str) -> tuple[Event, Pattern] | Rejection:
        for pattern, names, pick, need in self._patterns:
            if need not in body:
                continue  # text every match of the pattern holds is missing: it cannot match
            try:
                found = pattern.compiled.match(body, timeout=self.pack.timeout)
            except TimeoutError:
                return Rejection("timeout", f"pattern {pattern.id}")
            if found:
                groups = dict(zip(names, pick(found.groups()), strict=True))
                event = build_event(prefix, groups, found.captures("tcpflags"), self._read)
                return (event, pattern) if isinstance(event, Event) else event
        return self._diagnose(body)

    def _read(self, text: str | None, reader: Reader) -> Any:
        """`reader(text)`, remembered: the destination and a source's other knocks
        repeat the same texts. Readers are pure and their answers immutable."""
        if text is None:
            return reader(None)
        key = text if reader is parse_address else "#" + text
        value = self._values.get(key)
        if value is None:
            if len(self._values) >= VALUES:
                self._values.clear()
            value = self._values[key] = reader(text)
        return value

    def _diagnose(self, body: str) -> Rejection:
        """No pattern fits: tell a cut-off line from one in a foreign format."""
        text = body[:-1]
        for pattern in self.pack.patterns:
            try:
                found = pattern.compiled.match(text, partial=True, timeout=self.pack.timeout)
            except TimeoutError:
                return Rejection("timeout", f"pattern {pattern.id}")
            if found is not None and found.partial:
                return Rejection("truncated", f"ends early for pattern {pattern.id}")
        return Rejection("no-pattern", f"no pattern of {self.pack.spec} fits")


def _discriminators(pack: Pack) -> list[tuple[Pattern, str]]:
    """Each pattern with the longest text its matches hold that some other pattern's
    need not ("" when there is none: the substring test then always passes)."""
    needs = [required_literals(p.source, p.compiled.flags) for p in pack.patterns]
    common = set.intersection(*map(set, needs)) if needs else set()
    return [
        (p, next((t for t in ts if t not in common), ""))
        for p, ts in zip(pack.patterns, needs, strict=True)
    ]


def _group_reader(pattern: Pattern) -> tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]:
    """The event's groups a pattern has (the pack loader made sure of five at least), and
    a function picking their values out of `match.groups()`: one call instead of a
    `groupdict()`, the regex module giving all groups of one name one number."""
    index = pattern.compiled.groupindex
    names = tuple(name for name in EVENT_GROUPS if name in index)
    return names, operator.itemgetter(*(index[name] - 1 for name in names))


def check_tokens(body: str, pack: Pack, ranks: Mapping[str, int]) -> Rejection | None:
    """Repeated keys, impossible order and unbalanced brackets, outside quoted
    packets `[...]` and option lists `OPT ( ... )`."""
    checks, counts, depth, last = pack.checks, dict[str, int](), 0, -1
    for token in body.split(" "):
        opens = token.count("[") + token.count("(")
        if depth == 0 and not opens and "=" in token:
            key = token.partition("=")[0]
            counts[key] = seen = counts.get(key, 0) + 1
            limit = 1 if key in checks.unique else 2 if key in checks.at_most_twice else 0
            if limit and seen > limit:
                return Rejection("repeated-key", f"{key}= appears {seen} times")
            if seen == 1 and key in ranks:
                if ranks[key] < last:
                    return Rejection("field-order", f"{key}= where the kernel never prints it")
                last = ranks[key]
        depth += opens - token.count("]") - token.count(")")
        if depth < 0:
            return Rejection("unbalanced", "']' without '['")
    return Rejection("truncated", "quoted packet not closed") if depth else None


def _plain(text: str | None, reader: Reader) -> Any:
    return reader(text)


def build_event(
    prefix: str, groups: Mapping[str, str | None], flags: list[str], read: Read = _plain
) -> Event | Rejection:
    """The event of a pattern's groups; `read(text, reader)` gives `reader(text)`."""
    src, dst = read(groups["src"], parse_address), read(groups["dst"], parse_address)
    if isinstance(src, Rejection):
        return src
    if isinstance(dst, Rejection):
        return dst
    if type(src) is not type(dst):
        return Rejection("bad-address", "source and destination of different families")
    fragment = groups.get("frag") is not None
    # A non-first fragment has no transport header: whatever stands there is payload.
    spt = None if fragment else parse_port(groups.get("spt"))  # random: not worth remembering
    if isinstance(spt, Rejection):
        return spt
    dpt = None if fragment else read(groups.get("dpt"), parse_port)
    if isinstance(dpt, Rejection):
        return dpt
    return Event(
        prefix=prefix,
        in_iface=groups["in"] or "",
        out_iface=groups["out"] or "",
        src=src,
        dst=dst,
        proto=groups["proto"] or "",
        spt=spt,
        dpt=dpt,
        tcp_flags=frozenset("".join(flags).split()),
        fragment=fragment,
    )


def parse_address(text: str | None) -> IPAddress | Rejection:
    if not text or "%" in text:
        return Rejection("bad-address", repr(text))
    # The forms the kernel prints, read faster; the same values ipaddress gives them.
    if DOTTED.match(text):
        return ipaddress.IPv4Address(socket.inet_aton(text))
    if EXPLODED.match(text):
        return ipaddress.IPv6Address(int(text.replace(":", ""), 16))
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return Rejection("bad-address", repr(text))


def parse_port(text: str | None) -> int | Rejection | None:
    if text is None:
        return None
    if not PORT.match(text):
        return Rejection("bad-port", repr(text))
    port = int(text)
    return port if port <= 65535 else Rejection("bad-port", repr(text))


def _reject(code: str, detail: str) -> Match:
    return Match(None, None, Rejection(code, detail))
