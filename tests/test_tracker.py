"""One test per rule of docs/semantics.md, named after the rule.

Most tests are timelines, `on(tracker).play(script)`: each line feeds a knock
(`TIME SRC PORT/PROTO[:FLAGS]`), ticks (`TIME tick`), or grants and revokes by
hand (`TIME grant SRC SEQ [DURATION]`, `TIME revoke SRC [SEQ]`), and lists
after `=>` every decision that call must return, `;`-separated, as
`ACTION SEQUENCE SRC @TIME [until EXPIRES]`. A line without `=>` must return
nothing. `#` starts a comment.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tracemalloc
from pathlib import Path

import pytest

from logknock.models import Action, Decision, Knock
from logknock.schema import Bruteforce, Config, Limits, PortSpec, Sequence, Step, Totp
from logknock.totp import totp_ports
from logknock.tracker import Tracker, TrackerState
from logknock.tracker_state import GrantState

SOURCES = {"A": "198.18.0.7", "B": "198.18.0.8", "C": "2001:db8::7", "D": "198.18.0.9"}
ALIASES = {ipaddress.ip_address(v): k for k, v in SOURCES.items()}
DST = ipaddress.ip_address("198.18.0.1")


def steps(text: str) -> tuple[Step, ...]:
    """ "7000/udp 8000/tcp:syn,!ack" -> steps."""
    return tuple(step(word) for word in text.split())


def step(text: str) -> Step:
    port, _, rest = text.partition("/")
    proto, _, flags = rest.partition(":")
    words = [f.upper() for f in flags.split(",") if f]
    must = frozenset(f for f in words if not f.startswith("!"))
    return Step(int(port), proto, must, frozenset(f[1:] for f in words if f.startswith("!")))


def seq(name: str, knock: str = "7000/udp 8000/tcp 9000/udp", **kw: object) -> Sequence:
    fields: dict[str, object] = {"open": (PortSpec(22, "tcp"),), **kw}
    return Sequence(name, knock=steps(knock) if knock else (), **fields)  # type: ignore[arg-type]


SSH = seq("ssh")


def config(*sequences: Sequence, **kw: object) -> Config:
    return Config(sequences=sequences, **kw)  # type: ignore[arg-type]


def k(src: str, port: str, at: float, flags: str = "") -> Knock:
    number, _, proto = port.partition("/")
    address = ipaddress.ip_address(SOURCES.get(src, src))
    found = frozenset(f.upper() for f in flags.split(",") if f)
    return Knock(address, DST, proto, int(number), at, found)


def show(d: Decision) -> str:
    text = f"{d.action.value} {d.sequence or '-'} {ALIASES.get(d.src, str(d.src))} @{d.at:g}"
    return text if d.expires is None else f"{text} until {d.expires:g}"


def on(tracker: Tracker) -> Timeline:
    return Timeline(tracker)


class Timeline:
    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def play(self, script: str) -> None:
        for number, line in enumerate(script.strip().splitlines(), start=1):
            call, _, expected = line.split("#")[0].partition("=>")
            want = [item.strip() for item in expected.split(";") if item.strip()]
            got = [show(d) for d in run(self.tracker, call.split())]
            assert got == want, f"line {number}: {line.strip()}"


def run(tracker: Tracker, words: list[str]) -> list[Decision]:
    at, verb, *rest = words
    if verb == "tick":
        return tracker.tick(float(at))
    if verb == "grant":
        duration = float(rest[2]) if len(rest) > 2 else None
        return tracker.grant(ipaddress.ip_address(SOURCES[rest[0]]), rest[1], float(at), duration)
    if verb == "revoke":
        name = rest[1] if len(rest) > 1 else None
        return tracker.revoke(ipaddress.ip_address(SOURCES[rest[0]]), float(at), name)
    port, _, flags = rest[0].partition(":")
    return tracker.feed(k(verb, port, float(at), flags))


# -- words ---------------------------------------------------------------------


def test_tcp_flags_are_part_of_a_step() -> None:
    t = Tracker(config(seq("ssh", "7000/tcp:syn,!ack 8000/udp")))
    on(t).play("""
        1 A 7000/tcp:syn,ack      # ACK is forbidden: not the first step
        2 A 8000/udp
        3 A 7000/tcp:syn
        4 A 8000/udp  => open ssh A @4 until 34
    """)


def test_sequences_progress_independently() -> None:
    t = Tracker(config(seq("ssh"), seq("web", "7000/udp 6000/udp 9000/udp")))
    on(t).play("""
        1 A 7000/udp              # starts both
        2 A 8000/tcp              # advances ssh, resets web
        3 A 9000/udp  => open ssh A @3 until 33
        4 A 7000/udp
        5 A 6000/udp
        6 A 9000/udp  => open web A @6 until 36
    """)


def test_sources_progress_independently() -> None:
    t = Tracker(config(SSH))
    on(t).play("""
        1 A 7000/udp
        1 B 7000/udp
        2 A 8000/tcp
        2 C 7000/udp
        3 B 8000/tcp
        3 C 8000/tcp
        4 C 9000/udp  => open ssh C @4 until 34
        4 A 9000/udp  => open ssh A @4 until 34
        5 B 9000/udp  => open ssh B @5 until 35
    """)


# -- following a sequence ------------------------------------------------------


def test_next_step_advances_within_timeouts() -> None:
    t = Tracker(config(seq("ssh", step_timeout=5.0, sequence_timeout=10.0)))
    on(t).play("""
        0 A 7000/udp
        5 A 8000/tcp              # gap exactly step_timeout
        10 A 9000/udp => open ssh A @10 until 40
    """)


def test_step_gap_over_step_timeout_does_not_advance() -> None:
    t = Tracker(config(seq("ssh", step_timeout=5.0)))
    on(t).play("""
        0 A 7000/udp
        5.01 A 8000/tcp           # too late: the first step had timed out
        6 A 9000/udp
    """)
    quick = seq("quick", "7000/udp 8000/tcp 1/udp", step_timeout=2.0)
    t = Tracker(config(quick, seq("slow", "7000/udp 8000/tcp 2/udp", step_timeout=10.0)))
    on(t).play("""
        0 A 7000/udp              # one knock starts both
        2.01 A 8000/tcp           # too late for quick only
        3 A 1/udp
        4 A 7000/udp
        6.01 A 8000/tcp
        7 A 2/udp     => open slow A @7 until 37
    """)


def test_sequence_over_sequence_timeout_does_not_advance() -> None:
    t = Tracker(config(seq("ssh", step_timeout=5.0, sequence_timeout=8.0)))
    on(t).play("""
        0 A 7000/udp
        4 A 8000/tcp
        8.01 A 9000/udp           # each gap fits, the whole does not
    """)
    assert t.tracked_count == 0


def test_completion_is_one_decision() -> None:
    t = Tracker(config(SSH))
    on(t).play("""
        1 A 7000/udp
        2 A 8000/tcp
        3 A 9000/udp  => open ssh A @3 until 33
    """)
    assert t.tracked_count == 0


def test_duplicate_within_window_is_ignored() -> None:
    t = Tracker(config(SSH))
    on(t).play("""
        1 A 7000/udp
        1.4 A 7000/udp            # a client that sends twice
        2 A 8000/tcp
        3 A 8000/tcp              # SYN retransmit, 1s later: still a duplicate
        4 A 9000/udp  => open ssh A @4 until 34
    """)


def test_repeated_step_counts_after_duplicate_window() -> None:
    t = Tracker(config(seq("ssh", "7000/udp 7000/udp 9000/udp")))
    on(t).play("""
        1 A 7000/udp
        1.5 A 7000/udp            # duplicate: does not count as step two
        2.5 A 9000/udp            # so this resets
        3 A 7000/udp
        4.5 A 7000/udp
        5 A 9000/udp  => open ssh A @5 until 35
    """)


def test_duplicate_record_is_ignored() -> None:
    t = Tracker(config(SSH, bruteforce=Bruteforce(max_failures=1)))
    on(t).play("""
        1 A 7000/udp
        2 A 8000/tcp
        2 A 8000/tcp              # the same record read twice
        3 A 9000/udp  => open ssh A @3 until 33
    """)


def test_other_knock_resets_progress() -> None:
    t = Tracker(config(SSH))
    on(t).play("""
        1 A 7000/udp
        2 A 8000/tcp
        2.5 A 443/tcp             # not a sequence port: still resets
        3 A 9000/udp
    """)
    assert t.tracked_count == 0


def test_port_scan_does_not_open() -> None:
    t = Tracker(config(seq("ssh", "7000/udp 7005/udp 7010/udp"), bruteforce=Bruteforce(100)))
    for i, port in enumerate(range(6990, 7020)):
        assert t.feed(k("A", f"{port}/udp", 1.0 + i * 0.01)) == []
    for i, port in enumerate(range(7020, 6990, -1)):
        assert t.feed(k("B", f"{port}/udp", 1.0 + i * 0.01)) == []


def test_reset_by_a_first_step_restarts_at_step_one() -> None:
    t = Tracker(config(SSH))
    on(t).play("""
        1 A 7000/udp
        2 A 8000/tcp
        3 A 7000/udp              # wrong third step, but a first step
        4 A 8000/tcp
        5 A 9000/udp  => open ssh A @5 until 35
    """)


def test_knock_that_advances_does_not_also_restart() -> None:
    t = Tracker(config(seq("ssh", "5/tcp 5/tcp 2/udp")))
    on(t).play("""
        1 A 5/tcp
        2.5 A 5/tcp               # step two (not a duplicate: over 1s later)
        4 A 5/tcp                 # wrong third step; restarts at step one
        5 A 2/udp                 # so this is its wrong second step
        6 A 5/tcp
        7.5 A 5/tcp
        8 A 2/udp     => open ssh A @8 until 38
    """)


def test_out_of_order_knock_is_ignored() -> None:
    t = Tracker(config(SSH, bruteforce=Bruteforce(max_failures=1)))
    on(t).play("""
        1 A 7000/udp
        3 A 8000/tcp
        2 A 443/tcp               # earlier than A's last knock: ignored, no failure
        2.5 A 9000/udp            # earlier too: cannot complete
        4 A 9000/udp  => open ssh A @4 until 34
    """)
    assert t.bans == ()


def test_knocks_at_equal_times_are_taken_in_order() -> None:
    t = Tracker(config(SSH))
    on(t).play("""
        5 A 7000/udp
        5 A 8000/tcp
        5 A 9000/udp  => open ssh A @5 until 35
    """)


# -- failures and bans ----------------------------------------------------------


def two_failures_ban(*sequences: Sequence) -> Tracker:
    rules = Bruteforce(max_failures=2, window=100.0, ban_for=50.0)
    return Tracker(config(*(sequences or (SSH,)), bruteforce=rules))


def test_wrong_knock_is_one_failure() -> None:
    t = two_failures_ban(seq("ssh"), seq("web", "7000/udp 6000/udp"))
    on(t).play("""
        1 A 7000/udp              # progress on ssh and web
        2 A 5000/udp              # resets both: one failure, not two
        3 A 7000/udp
        4 A 5000/udp  => ban - A @4 until 54
    """)


def test_timeout_is_one_failure() -> None:
    t = two_failures_ban(seq("ssh"), seq("web", "7000/udp 8000/tcp 6000/udp", step_timeout=9.0))
    on(t).play("""
        1 A 7000/udp
        2 A 8000/tcp              # step two of ssh and of web
        8 tick                    # ssh times out at 7: one failure
        12 tick                   # web times out at 11: the same knock, not counted again
        20 A 7000/udp
        21 A 8000/tcp
        27 tick       => ban - A @26 until 76
    """)
    assert t.tracked_count == 0  # web, still waiting, went with the ban


def test_knock_without_progress_is_not_a_failure() -> None:
    t = Tracker(config(SSH, bruteforce=Bruteforce(max_failures=1)))
    on(t).play("""
        1 A 443/tcp
        2 A 8000/tcp
        3 A 9000/udp
    """)


def test_lone_first_step_timeout_is_not_a_failure() -> None:
    t = Tracker(config(SSH, bruteforce=Bruteforce(max_failures=1)))
    on(t).play("""
        1 A 7000/udp
        100 tick
    """)
    assert t.tracked_count == 0


def test_restart_at_step_one_is_not_a_failure() -> None:
    t = Tracker(config(SSH, bruteforce=Bruteforce(max_failures=1)))
    on(t).play("""
        1 A 7000/udp
        2.5 A 7000/udp            # not a duplicate (>1s): restarts
        3 A 8000/tcp
        3.5 A 9000/udp => open ssh A @3.5 until 33.5
    """)


def test_max_failures_within_window_ban() -> None:
    t = two_failures_ban()
    on(t).play("""
        1 A 7000/udp
        2 A 1/tcp
        3 A 7000/udp
        4 A 2/tcp     => ban - A @4 until 54
    """)
    assert [(str(b.src), b.until) for b in t.bans] == [("198.18.0.7", 54.0)]
    assert t.tracked_count == 0


def test_failures_outside_window_do_not_ban() -> None:
    rules = Bruteforce(max_failures=2, window=10.0, ban_for=50.0)
    t = Tracker(config(SSH, bruteforce=rules))
    on(t).play("""
        1 A 7000/udp
        2 A 1/tcp
        12.5 A 7000/udp
        13 A 2/tcp                # the first failure is 11s old
        14 A 7000/udp
        15 A 3/tcp    => ban - A @15 until 65
    """)
    t = Tracker(config(SSH, bruteforce=rules))
    on(t).play("""
        1 A 7000/udp
        2 A 1/tcp
        11.5 A 7000/udp
        12 A 2/tcp    => ban - A @12 until 62
    """)  # exactly `window` old still counts


def test_banned_source_is_ignored() -> None:
    t = two_failures_ban()
    on(t).play("""
        1 A 7000/udp
        2 A 1/tcp
        3 A 7000/udp
        4 A 2/tcp     => ban - A @4 until 54
        5 A 7000/udp
        6 A 8000/tcp
        7 A 9000/udp
        7 B 7000/udp
    """)
    assert t.tracked_count == 1  # B only


def test_ban_ends_with_unban() -> None:
    t = two_failures_ban()
    on(t).play("""
        1 A 7000/udp
        2 A 1/tcp
        3 A 7000/udp
        4 A 2/tcp     => ban - A @4 until 54
        53 tick
        54 tick       => unban - A @54
        55 A 7000/udp
        56 A 8000/tcp
        57 A 9000/udp => open ssh A @57 until 87
    """)
    t = two_failures_ban()
    on(t).play("""
        1 A 7000/udp
        2 A 1/tcp
        3 A 7000/udp
        4 A 2/tcp     => ban - A @4 until 54
        60 A 7000/udp => unban - A @54
        61 A 8000/tcp
        62 A 9000/udp => open ssh A @62 until 92
    """)


# -- grants --------------------------------------------------------------------


def test_completion_opens_until_open_for() -> None:
    t = Tracker(config(seq("ssh", open_for=12.5, open=(PortSpec(22, "tcp"), PortSpec(53, "udp")))))
    for at, port in ((1.0, "7000/udp"), (2.0, "8000/tcp")):
        assert t.feed(k("C", port, at)) == []
    address = ipaddress.ip_address(SOURCES["C"])
    assert t.feed(k("C", "9000/udp", 3.0)) == [
        Decision(3.0, Action.OPEN, address, "ssh", ("22/tcp", "53/udp"), 15.5)
    ]
    assert t.grants == (GrantState(address, "ssh", ("22/tcp", "53/udp"), 15.5, 3.0),)


def test_expiry_closes_from_tick() -> None:
    t = Tracker(config(SSH))
    on(t).play("""
        1 A 7000/udp
        2 A 8000/tcp
        3 A 9000/udp  => open ssh A @3 until 33
        32.9 tick
        40 tick       => close ssh A @33
        50 tick
    """)
    assert t.grants == ()


def test_expiry_closes_at_start_of_feed() -> None:
    t = Tracker(config(SSH))
    on(t).play("""
        1 A 7000/udp
        2 A 8000/tcp
        3 A 9000/udp  => open ssh A @3 until 33
        34 B 443/tcp  => close ssh A @33
    """)


def test_completion_while_open_refreshes() -> None:
    t = Tracker(config(SSH))
    on(t).play("""
        1 A 7000/udp
        2 A 8000/tcp
        3 A 9000/udp  => open ssh A @3 until 33
        10 A 7000/udp
        11 A 8000/tcp
        12 A 9000/udp => open ssh A @12 until 42
        40 tick
        42 tick       => close ssh A @42
    """)


def test_completion_within_a_second_does_nothing() -> None:
    t = Tracker(config(seq("ssh", "7000/udp 8000/udp")))
    on(t).play("""
        1 A 7000/udp
        1.2 A 8000/udp => open ssh A @1.2 until 31.2
        1.4 A 7000/udp
        1.6 A 8000/udp             # 0.4s after: no decision, expiry unchanged
        2.2 A 7000/udp
        2.2 A 8000/udp => open ssh A @2.2 until 32.2
        40 tick        => close ssh A @32.2
    """)


def test_closes_closes_the_named_grant() -> None:
    close = seq("bye", "6000/udp 6001/udp", open=(), closes="ssh")
    t = Tracker(config(SSH, close))
    on(t).play("""
        1 A 6000/udp
        2 A 6001/udp                # no grant: nothing
        3 A 7000/udp
        4 A 8000/tcp
        5 A 9000/udp  => open ssh A @5 until 35
        6 B 6000/udp
        7 B 6001/udp                # B has no grant; A's stays
        8 A 6000/udp
        9 A 6001/udp  => close ssh A @9
        40 tick
    """)


def test_toggle_alternates_open_and_close() -> None:
    t = Tracker(config(seq("door", "7000/udp 8000/udp", toggle=True, open_for=100.0)))
    on(t).play("""
        1 A 7000/udp
        2 A 8000/udp  => open door A @2 until 102
        2.1 A 7000/udp
        2.2 A 8000/udp                # the client sent it twice: no close
        5 A 7000/udp
        6 A 8000/udp  => close door A @6
        7 A 7000/udp
        8 A 8000/udp  => open door A @8 until 108
        200 tick      => close door A @108
    """)


def test_manual_grant_and_revoke() -> None:
    t = Tracker(config(SSH, seq("web", "1/udp 2/udp")))
    on(t).play("""
        1 grant A ssh         => open ssh A @1 until 31
        2 grant A web 5       => open web A @2 until 7
        3 grant B ssh         => open ssh B @3 until 33
        4 revoke A ssh        => close ssh A @4
        5 grant A ssh         => open ssh A @5 until 35
        6 revoke A            => close ssh A @6; close web A @6
        7 tick
        8 revoke B web
        40 tick               => close ssh B @33
    """)
    with pytest.raises(ValueError, match="nope"):
        t.grant(ipaddress.ip_address(SOURCES["A"]), "nope", 50.0)


def test_decisions_carry_ports_as_strings() -> None:
    t = Tracker(config(seq("ssh", "1/udp", open=(PortSpec(22, "tcp"), PortSpec(60001, "udp")))))
    (opened,) = t.feed(k("A", "1/udp", 1.0))
    (closed,) = t.tick(100.0)
    assert opened.ports == closed.ports == ("22/tcp", "60001/udp")


# -- one-time and TOTP sequences ---------------------------------------------------


def once(*lines: str) -> Sequence:
    return seq("vault", "", one_time=tuple(steps(line) for line in lines))


def test_one_time_follows_every_unused_line() -> None:
    t = Tracker(config(once("1/udp 2/udp 3/udp", "1/udp 2/udp 4/udp", "1/udp 5/udp")))
    on(t).play("""
        1 A 1/udp
        2 A 2/udp                # lines one and two still possible
        3 A 4/udp     => open vault A @3 until 33
    """)
    assert t.snapshot().one_time == (("vault", ("1/udp 2/udp 4/udp",)),)


def test_one_time_line_works_once() -> None:
    t = Tracker(config(once("1/udp 2/udp", "3/udp 4/udp")))
    on(t).play("""
        1 A 1/udp
        1 B 1/udp
        2 A 2/udp     => open vault A @2 until 32
        3 B 2/udp                 # B was part way through the same line
        10 A 1/udp                # used: not even a first step any more
    """)
    assert t.tracked_count == 0
    on(t).play("""
        11 A 2/udp
        12 A 3/udp
        13 A 4/udp    => open vault A @13 until 43
    """)


def test_one_time_use_is_recorded_before_the_decision() -> None:
    t = Tracker(config(once("1/udp 2/udp")))
    t.feed(k("A", "1/udp", 1.0))
    before = t.revision
    assert [d.action for d in t.feed(k("A", "2/udp", 2.0))] == [Action.OPEN]
    assert t.snapshot().one_time == (("vault", ("1/udp 2/udp",)),)
    assert t.revision > before


def test_one_time_use_survives_restart() -> None:
    cfg = config(once("1/udp 2/udp", "3/udp 4/udp"))
    t = Tracker(cfg)
    t.feed(k("A", "1/udp", 1.0))
    t.feed(k("A", "2/udp", 2.0))
    restarted = Tracker(cfg, state=TrackerState.from_json(t.snapshot().to_json()))
    on(restarted).play("""
        10 B 1/udp
        11 B 2/udp
        12 B 3/udp
        13 B 4/udp    => open vault B @13 until 43
    """)


TOTP = Totp(secret=b"0123456789abcdef", secret_file="/dev/null", period=30.0, steps=3)


def totp_knocks(t: Tracker, src: str, counter: int, at: float) -> list[Decision]:
    out: list[Decision] = []
    for i, port in enumerate(totp_ports(TOTP, counter)):
        out += t.feed(k(src, f"{port}/udp", at + i * 0.5))
    return out


def totp_tracker() -> Tracker:
    return Tracker(config(seq("rolling", "", totp=TOTP), bruteforce=Bruteforce(100)))


def test_totp_accepts_current_and_previous_period() -> None:
    t = totp_tracker()
    assert [show(d) for d in totp_knocks(t, "A", 100, 3005.0)] == [
        "open rolling A @3006 until 3036"
    ]
    assert [show(d) for d in totp_knocks(t, "B", 99, 3005.0)] == ["open rolling B @3006 until 3036"]


def test_totp_rejects_older_periods() -> None:
    t = totp_tracker()
    assert totp_knocks(t, "A", 98, 3005.0) == []
    assert totp_knocks(t, "A", 101, 3005.0) == []


def test_totp_period_cannot_open_twice() -> None:
    t = totp_tracker()
    assert len(totp_knocks(t, "A", 100, 3005.0)) == 1
    assert t.feed(k("A", f"{totp_ports(TOTP, 100)[0]}/udp", 3015.0)) == []
    assert t.tracked_count == 0  # a used period does not even start
    assert totp_knocks(t, "A", 100, 3016.0) == []  # replayed, in the same period
    replayed = totp_knocks(t, "A", 100, 3035.0)  # replayed as the previous period
    assert [show(d) for d in replayed] == ["close rolling A @3036"]  # only the expiry
    assert [show(d) for d in totp_knocks(t, "A", 101, 3040.0)] == [
        "open rolling A @3041 until 3071"
    ]


def test_totp_replay_record_survives_restart() -> None:
    t = totp_tracker()
    totp_knocks(t, "A", 100, 3005.0)
    state = TrackerState.from_json(t.snapshot().to_json())
    assert [(u.sequence, u.counter) for u in state.totp] == [("rolling", 100)]
    restarted = Tracker(config(seq("rolling", "", totp=TOTP)), state=state)
    assert totp_knocks(restarted, "A", 100, 3020.0) == []
    restarted.tick(3000.0 + 30 * 3.5)  # period 103: 100 is more than two periods old
    assert restarted.snapshot().totp == ()


def test_totp_late_record_cannot_replay_a_forgotten_period() -> None:
    fast = dataclasses.replace(TOTP, period=2.0)
    t = Tracker(config(seq("rolling", "", totp=fast)))
    ports = totp_ports(fast, 1000)
    for i, port in enumerate(ports):
        t.feed(k("A", f"{port}/udp", 2000.0 + i * 0.5))
    assert t.grants != ()
    t.tick(2008.0)  # period 1004: the record of period 1000 is forgotten
    late = [t.feed(k("A", f"{port}/udp", 2003.5 + i * 0.5)) for i, port in enumerate(ports)]
    assert late == [[], [], []]  # times of period 1001, whose previous period is 1000


# -- bounded memory -----------------------------------------------------------------


def bounded(limit: int, *sequences: Sequence) -> Tracker:
    return Tracker(config(*(sequences or (SSH,)), limits=Limits(limit)))


def flood(t: Tracker, count: int, at: float, port: str = "7000/udp") -> None:
    for i in range(count):
        assert t.feed(k(f"198.18.{1 + i // 250}.{i % 250}", port, at + i * 1e-4)) == []


def test_tracked_count_never_exceeds_max_tracked() -> None:
    t = bounded(10, SSH, seq("web", "7000/udp 8000/tcp 1/udp"))
    for i in range(100):
        t.feed(k(f"198.18.0.{i}", "7000/udp", 1.0))
        if i % 3 == 0:
            t.feed(k(f"198.18.0.{i}", "8000/tcp", 1.5))
        assert t.tracked_count <= 10


def test_first_step_flood_cannot_evict_an_advanced_source() -> None:
    t = bounded(8)
    on(t).play("""
        1 A 7000/udp
        2 A 8000/tcp
    """)
    flood(t, 5000, 2.0)
    assert t.tracked_count == 8
    on(t).play("""
        3 A 9000/udp  => open ssh A @3 until 33
    """)


def test_least_advanced_oldest_entry_is_evicted_first() -> None:
    long = seq("long", "1/udp 2/udp 3/udp 4/udp 5/udp")
    t = bounded(4, long)
    on(t).play("""
        1 A 1/udp
        2 A 2/udp
        3 A 3/udp                 # A at step three
        3 B 1/udp
        4 B 2/udp                 # B at step two
        4 C 1/udp
        5 C 2/udp                 # C at step two, after B
        5 D 1/udp                 # D at step one: the table is full
    """)
    flood(t, 10, 5.0, port="1/udp")  # each new first step pushes out the previous one
    assert t.tracked_count == 4
    on(t).play("""
        5.5 D 2/udp                # D's first step was pushed out
    """)
    t.reconfigure(config(long, limits=Limits(2)))  # room for two: B goes
    assert t.tracked_count == 2
    on(t).play("""
        6 A 4/udp
        7 A 5/udp     => open long A @7 until 37
        6 C 3/udp
        7 C 4/udp
        8 C 5/udp     => open long C @8 until 38
        8 B 3/udp
        9 B 4/udp
        10 B 5/udp
    """)


def test_first_step_is_not_recorded_when_only_advanced_entries_could_make_room() -> None:
    long = seq("long", "1/udp 2/udp 3/udp")
    t = bounded(2, long)
    on(t).play("""
        1 A 1/udp
        2 A 2/udp
        1 B 1/udp
        2 B 2/udp
    """)
    flood(t, 10, 2.0, port="1/udp")
    assert t.tracked_count == 2
    on(t).play("""
        3 A 3/udp     => open long A @3 until 33
        3 B 3/udp     => open long B @3 until 33
    """)


def test_first_step_survives_max_tracked_newer_first_steps() -> None:
    t = bounded(100)
    on(t).play("""
        1 A 7000/udp
    """)
    flood(t, 99, 1.0)
    on(t).play("""
        2 A 8000/tcp
        3 A 9000/udp  => open ssh A @3 until 33
    """)
    on(t).play("""
        11 A 7000/udp
    """)
    flood(t, 100, 11.0)
    on(t).play("""
        12 A 8000/tcp                 # the 100th newer first step pushed it out
        13 A 9000/udp
    """)


def test_failure_and_ban_tables_are_bounded() -> None:
    rules = Bruteforce(max_failures=1, window=100.0, ban_for=100.0)
    t = Tracker(config(SSH, bruteforce=rules, limits=Limits(3)))
    decisions = []
    for i in range(4):
        src = f"198.18.0.{10 + i}"
        t.feed(k(src, "7000/udp", float(i)))
        decisions += [show(d) for d in t.feed(k(src, "1/tcp", i + 0.5))]
    assert decisions == [
        "ban - 198.18.0.10 @0.5 until 100.5",
        "ban - 198.18.0.11 @1.5 until 101.5",
        "ban - 198.18.0.12 @2.5 until 102.5",
        "unban - 198.18.0.10 @3.5",  # the ban ending soonest makes room
        "ban - 198.18.0.13 @3.5 until 103.5",
    ]
    assert len(t.bans) == 3


def test_knock_cost_does_not_grow_with_sequences(monkeypatch: pytest.MonkeyPatch) -> None:
    many = [seq(f"s{i}", f"{1000 + i}/udp {3000 + i}/udp") for i in range(2000)]
    t = Tracker(config(*many))
    calls = []
    original = Step.accepts

    def counting(self: Step, knock: Knock) -> bool:
        calls.append(self)
        return original(self, knock)

    monkeypatch.setattr(Step, "accepts", counting)
    t.feed(k("A", "1500/udp", 1.0))
    t.feed(k("A", "3500/udp", 2.0))
    assert [d.sequence for d in t.feed(k("A", "1500/udp", 3.0))] == []
    assert len(calls) <= 4


def test_first_step_entries_are_cheap() -> None:
    """About 70 bytes a first-step entry: 40 in the preallocated ring and index, 32 for
    the address's int (kept as the key after the address object is gone)."""
    count = 20_000
    knocks = [k(f"198.18.{i // 250}.{i % 250}", "7000/udp", 1.0) for i in range(count)]
    tracemalloc.start()  # after the knocks: their addresses' ints are not counted
    try:
        before = tracemalloc.get_traced_memory()[0]
        t = bounded(count)
        for knock in knocks:
            t.feed(knock)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert t.tracked_count == count
    assert used / count < 50  # 43 measured on CPython 3.11


# -- decisions, state, configuration ------------------------------------------------


def test_decisions_are_in_time_order() -> None:
    t = Tracker(config(seq("a", "1/udp", open_for=5.0), seq("b", "2/udp", open_for=3.0)))
    on(t).play("""
        1 A 1/udp     => open a A @1 until 6
        1 B 2/udp     => open b B @1 until 4
        10 C 1/udp    => close b B @4; close a A @6; open a C @10 until 15
    """)


def test_snapshot_round_trips_through_json() -> None:
    rules = Bruteforce(max_failures=1, ban_for=100.0)
    cfg = config(SSH, once("1/udp 2/udp"), seq("rolling", "", totp=TOTP), bruteforce=rules)
    t = Tracker(cfg)
    on(t).play("""
        1 A 7000/udp
        2 A 8000/tcp
        3 A 9000/udp  => open ssh A @3 until 33
        4 C 1/udp
        5 C 2/udp     => open vault C @5 until 35
        6 B 7000/udp
        7 B 1/tcp     => ban - B @7 until 107
    """)
    totp_knocks(t, "A", 0, 8.0)
    state = t.snapshot()
    assert TrackerState.from_json(state.to_json()) == state
    assert len(state.grants) == 3 and len(state.bans) == 1
    assert state.one_time and state.totp
    restored = Tracker(cfg, state=state)
    assert restored.snapshot() == state


def test_restored_grant_past_expiry_closes_at_first_tick() -> None:
    address = ipaddress.ip_address(SOURCES["A"])
    state = TrackerState(grants=(GrantState(address, "gone", ("22/tcp",), 50.0, 20.0),))
    t = Tracker(config(SSH), state=state)
    assert [show(d) for d in t.tick(1000.0)] == ["close gone A @50"]


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"version": 2}',
        '{"version": 1, "grants": [{"src": "nope"}]}',
        '{"version": 1, "bans": [{"src": "198.18.0.1", "until": "soon"}]}',
        '{"version": 1, "totp": [{"src": "198.18.0.1", "sequence": "x", "counter": 1.5}]}',
        "not json",
    ],
)
def test_state_from_json_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        TrackerState.from_json(text)


def test_reconfigure_keeps_grants_and_drops_progress_of_changed_sequences() -> None:
    web = seq("web", "7000/udp 6000/udp 5000/udp")
    t = two_failures_ban(SSH, web, seq("old", "7000/udp 4000/udp 3000/udp"))
    on(t).play("""
        1 A 7000/udp
        2 A 8000/tcp
        3 A 9000/udp  => open ssh A @3 until 33
        4 B 7000/udp
        5 B 1/tcp
        6 B 7000/udp
        7 B 2/tcp     => ban - B @7 until 57
        8 A 7000/udp
        9 A 6000/udp
        9 C 7000/udp
        10 C 4000/udp
    """)
    t.reconfigure(config(dataclasses.replace(SSH, open_for=5.0), web))
    assert [g.sequence for g in t.grants] == ["ssh"] and len(t.bans) == 1
    on(t).play("""
        11 A 5000/udp => open web A @11 until 41
        12 C 3000/udp
        40 tick       => close ssh A @33
    """)


def test_semantics_doc_names_every_rule_test() -> None:
    """docs/semantics.md and this file name the same tests."""
    doc = (Path(__file__).parents[1] / "docs" / "semantics.md").read_text()
    named = set(re.findall(r"`(test_\w+)`", doc))
    defined = {name for name in globals() if name.startswith("test_")}
    assert named - defined == set(), "the doc names tests that do not exist"
    assert defined - named == {"test_semantics_doc_names_every_rule_test"}
