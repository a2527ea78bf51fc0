"""The fast lane (logknock.fastlane) gives the matcher's answer for every line it takes.

Each record is fed to a pipeline with the lane and to one without it; the
knocks handed to the tracker and every counter must be the same. The records:
every fixture line of the netfilter pack and the envelope fixtures, lines
generated from the lane's own regexes (so every shape it accepts is tried,
values the matcher rejects included), and the benchmark logs of genlog.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from testpaths import FIXTURES, PATTERNS, ROOT

from logknock.fastlane import TCP_FLAGS, FastLane, sample_bodies
from logknock.fixtures import Case, read_cases
from logknock.matcher import DEFAULT_PREFIX, Matcher
from logknock.models import Decision, Knock, LogRecord
from logknock.packs import load_pack_dir
from logknock.pipeline import Pipeline

sys.path.insert(0, str(ROOT / "bench"))

import genlog

PACK = load_pack_dir(PATTERNS / "netfilter")
MATCHER = Matcher(PACK, DEFAULT_PREFIX)
LANE = FastLane.for_matcher(MATCHER)
CONFIG = str(ROOT / "bench" / "configs" / "throughput.yaml")


class Recorder:
    """Stands in for the tracker: keeps the knocks it is given."""

    def __init__(self) -> None:
        self.knocks: list[Knock] = []

    def feed(self, knock: Knock) -> list[Decision]:
        self.knocks.append(knock)
        return []

    def tick(self, now: float) -> list[Decision]:
        return []


def outcome(records: list[LogRecord], fast: bool) -> tuple[list[Knock], dict[str, Any]]:
    recorder = Recorder()
    pipeline = Pipeline(MATCHER, recorder, fast=fast)  # type: ignore[arg-type]
    assert (pipeline.lane is not None) == fast
    for record in records:
        pipeline.feed(record)
    return recorder.knocks, pipeline.total().as_json()


def same_either_way(*records: LogRecord) -> list[Knock]:
    fast, slow = outcome(list(records), True), outcome(list(records), False)
    assert fast == slow
    return fast[0]


def ours(case: Case) -> bool:
    return case.settings.prefix == DEFAULT_PREFIX


CASES = [
    case
    for folder in ("netfilter", "envelopes")
    for path in sorted((FIXTURES / folder).glob("*.txt"))
    for case in read_cases(path)
    if ours(case)
]


def record_of(case: Case) -> LogRecord:
    s = case.settings
    return LogRecord("fixture", case.raw, None, None, s.trusted, s.envelope)


def test_the_lane_is_proven_for_the_shipped_pack() -> None:
    assert LANE is not None


@pytest.mark.parametrize("case", CASES, ids=[c.where for c in CASES])
def test_fixture_lines_read_the_same_either_way(case: Case) -> None:
    same_either_way(record_of(case))
    same_either_way(record_of(case)._replace(trusted=not case.settings.trusted))


def test_the_lane_takes_fixture_lines_of_every_common_envelope() -> None:
    assert LANE is not None
    taken = {c.settings.envelope for c in CASES if _fast_reading(record_of(c)) is not None}
    assert {"auto", "kmsg"} <= taken


def _fast_reading(record: LogRecord) -> object:
    pipeline = Pipeline(MATCHER, Recorder())  # type: ignore[arg-type]
    return pipeline._fast(record, pipeline.clock)


ENVELOPES = {
    "rfc3339": ("auto", "2026-06-15T00:05:03.851362+00:00 gw kernel: [83628.851363] {}"),
    "traditional": ("auto", "Jun 15 00:05:03 gw kernel: {}"),
    "kmsg": ("kmsg", "4,1234,83325088,-;{}"),
    "journal": ("journal-message", "{}"),
}


@pytest.mark.parametrize("envelope", sorted(ENVELOPES))
@pytest.mark.parametrize("body", sample_bodies())
def test_the_lane_reads_each_sample_shape_in_each_envelope(envelope: str, body: str) -> None:
    kind, form = ENVELOPES[envelope]
    line = form.format(DEFAULT_PREFIX + body)
    record = LogRecord("t", line.encode(), None, None, True, kind)
    assert _fast_reading(record) is not None
    assert len(same_either_way(record)) == 1


def test_a_journal_json_entry_takes_the_lane_and_keeps_its_origin() -> None:
    entry = {
        "_TRANSPORT": "kernel",
        "SYSLOG_FACILITY": "0",
        "__REALTIME_TIMESTAMP": "1781481600804255",
    }
    line = json.dumps({**entry, "MESSAGE": DEFAULT_PREFIX + sample_bodies()[0]})
    record = LogRecord("t", line.encode(), None, None, True, "auto")
    assert _fast_reading(record) is not None
    (knock,) = same_either_way(record)
    assert knock.at == 1781481600.804255
    forged = line.replace('"kernel"', '"syslog"').encode()
    assert same_either_way(LogRecord("t", forged, None, None, True, "auto")) == []


LANE_SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
nums = st.integers(0, 99999)
hex2 = st.integers(0, 255).map("{:02x}".format)


def optional(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.just(""), text)


def join(*parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(*parts).map("".join)


def address(version: int) -> st.SearchStrategy[str]:
    addresses = st.ip_addresses(v=version)
    return addresses.map(lambda a: a.exploded if version == 6 else str(a))


def kv(key: str, values: st.SearchStrategy[Any] = nums) -> st.SearchStrategy[str]:
    return values.map(lambda v: f"{key}={v} ")


def network(version: int) -> st.SearchStrategy[str]:
    src, dst = kv("SRC", address(version)), kv("DST", address(version))
    if version == 4:
        tos = st.integers(0, 255).map("{:02X}".format)
        head = join(kv("LEN"), kv("TOS", tos.map("0x{}".format)), kv("PREC", st.just("0x00")))
        rest = join(kv("TTL"), kv("ID"), optional(st.just("CE ")), optional(st.just("DF ")))
        return join(src, dst, head, rest)
    return join(src, dst, kv("LEN"), kv("TC"), kv("HOPLIMIT"), kv("FLOWLBL"))


flags = st.lists(st.sampled_from(TCP_FLAGS), unique=True).map(
    lambda fs: "".join(f + " " for f in TCP_FLAGS if f in fs)
)
valid_ports = st.integers(0, 65535)


def kernel_bodies(ports: st.SearchStrategy[int]) -> st.SearchStrategy[str]:
    """Messages as the kernel writes them; `ports` may go past 65535."""
    tcp = join(
        st.just("PROTO=TCP "),
        kv("SPT", ports),
        kv("DPT", ports),
        optional(join(kv("SEQ"), kv("ACK"))),
        kv("WINDOW"),
        kv("RES", hex2.map("0x{}".format)),
        flags,
        kv("URGP"),
    )
    udp = join(st.just("PROTO=UDP "), kv("SPT", ports), kv("DPT", ports), kv("LEN"))
    body = join(
        kv("IN", st.sampled_from(["eth0", "", "wg-admin", "enp0s31f6.100"])),
        kv("OUT", st.sampled_from(["", "lo", "br0"])),
        optional(kv("MAC", st.lists(hex2, max_size=14).map(":".join))),
        st.one_of(network(4), network(6)),
        st.one_of(tcp, udp),
        optional(join(kv("UID"), kv("GID"))),
        optional(st.integers(0, 2**32 - 1).map("MARK=0x{:x} ".format)),
    )
    return body.map(lambda text: DEFAULT_PREFIX + text)


bodies = kernel_bodies(st.one_of(valid_ports, st.integers(65536, 99999)))
moments = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2037, 1, 1))
fractions = optional(st.integers(0, 10**9 - 1).map(lambda n: "." + str(n)[: 1 + n % 9]))
zones = st.sampled_from(["", "Z", "+00:00", "-05:00", "+0530", "+01:00"])
stamps = st.one_of(
    st.tuples(moments, fractions, zones).map(
        lambda t: t[0].strftime("%Y-%m-%dT%H:%M:%S") + t[1] + t[2]
    ),
    st.tuples(moments, fractions).map(lambda t: t[0].strftime("%b %e %H:%M:%S") + t[1]),
)
kernel_stamps = optional(st.floats(0, 10**7).map("[{:12.6f}] ".format))


def trimmed(text: str, trim: bool) -> str:
    return text.rstrip(" ") if trim else text


@LANE_SETTINGS
@given(stamps, kernel_stamps, bodies, st.booleans())
def test_kernel_syslog_lines_read_the_same_either_way(
    stamp: str, kernel: str, body: str, trim: bool
) -> None:
    line = trimmed(f"{stamp} gw kernel: {kernel}{body}", trim)
    same_either_way(LogRecord("t", line.encode(), None, None, True, "auto"))


@LANE_SETTINGS
@given(bodies, st.sampled_from(["kmsg", "journal-message"]), st.booleans(), st.booleans())
def test_kernel_messages_read_the_same_either_way(
    body: str, kind: str, trusted: bool, trim: bool
) -> None:
    line = trimmed(f"0,17,83325088,-;{body}" if kind == "kmsg" else body, trim)
    same_either_way(LogRecord("t", line.encode(), 12.5, None, trusted, kind))


@LANE_SETTINGS
@given(stamps, kernel_bodies(valid_ports))
def test_valid_kernel_lines_take_the_lane(stamp: str, body: str) -> None:
    """The generators above exercise the lane, not only the matcher's way."""
    assume("Feb 29" not in stamp)  # a yearless February 29 is read as the last leap year's
    line = f"{stamp} gw kernel: {body}"
    assert _fast_reading(LogRecord("t", line.encode(), None, None, True)) is not None


@LANE_SETTINGS
@given(st.data())
def test_lines_of_the_lanes_own_regex_read_the_same_either_way(data: st.DataObject) -> None:
    """Every text the lane's regex fits, nonsense values included."""
    assert LANE is not None
    line = data.draw(st.from_regex(LANE.line_pattern, fullmatch=True))
    same_either_way(LogRecord("t", line.encode(), None, None, True, "auto"))
    message = data.draw(st.from_regex(LANE.message_pattern, fullmatch=True))
    same_either_way(LogRecord("t", message.encode(), 3.0, None, True, "journal-message"))


@pytest.mark.parametrize("fmt", genlog.FORMATS)
def test_benchmark_logs_read_the_same_either_way(tmp_path: Path, fmt: str) -> None:
    log = tmp_path / "mixed.log"
    genlog.generate(log, genlog.Spec(lines=3000, knocks=0.5, fmt=fmt), CONFIG)
    lines = log.read_bytes().splitlines()
    knocks = same_either_way(*(LogRecord("t", line, None, None, True) for line in lines))
    assert len(knocks) > 1000


@pytest.mark.parametrize("prefix", [None, "", "IN=x OUT=y ", "lögknock: ", "tab\there: "])
def test_no_lane_for_a_prefix_it_cannot_anchor(prefix: str | None) -> None:
    assert FastLane.for_matcher(Matcher(PACK, prefix)) is None


def test_no_lane_for_a_pack_it_was_not_proven_against(tmp_path: Path) -> None:
    text = (PATTERNS / "netfilter" / "pack.yaml").read_text()
    folder = tmp_path / "netfilter"
    folder.mkdir()
    (folder / "pack.yaml").write_text(text.replace("version: 1.0.0", "version: 2.0.0"))
    assert FastLane.for_matcher(Matcher(load_pack_dir(folder))) is None


def test_no_lane_when_the_pack_reads_a_sample_otherwise(tmp_path: Path) -> None:
    """A 1.x pack whose token checks reject MARK= after UID=: the lane's own
    check at start-up finds the disagreement and stays off."""
    text = (PATTERNS / "netfilter" / "pack.yaml").read_text()
    folder = tmp_path / "netfilter"
    folder.mkdir()
    changed = text.replace("MTU, SPI, UID, GID,\n          MARK]", "MTU, SPI, MARK, UID, GID]")
    assert changed != text
    (folder / "pack.yaml").write_text(changed)
    assert FastLane.for_matcher(Matcher(load_pack_dir(folder))) is None
