"""Text that every match of a pattern must contain, read from the pattern's source.

The matcher tries a pack's patterns in order, and a pattern that fails costs
as much as one that matches (the IPv4 pattern on an IPv6 line). A pattern
whose required text is missing from a body cannot match it, so the matcher
skips it with a substring test: the first pattern that matches is the same.

`required_literals` is deliberately simple and errs on the side of finding
nothing: it reads only literal runs outside every group and character class
of a pattern with no top-level `|`, ends a run at any escape, metacharacter
or quantifier (dropping the quantified character), and gives up on a
case-insensitive or verbose pattern and on POSIX classes (`[[:alpha:]]`).
"""

from __future__ import annotations

import regex

MIN_LENGTH = 4  # shorter runs are in almost every line anyway
_META = frozenset(".^$|{}[]()\\*+?")
_QUANTIFIERS = frozenset("*+?{")  # "{": also a fuzzy constraint
_UNSAFE_FLAGS = regex.IGNORECASE | regex.VERBOSE | regex.FULLCASE


def required_literals(source: str, flags: int = 0) -> tuple[str, ...]:
    """Literal runs that occur in every match of `source`, longest first."""
    if flags & _UNSAFE_FLAGS or "(?#" in source:
        return ()
    runs = _top_level_runs(source)
    if runs is None:
        return ()
    found = {run for run in runs if len(run) >= MIN_LENGTH}
    return tuple(sorted(found, key=lambda run: (-len(run), run)))


def _top_level_runs(source: str) -> list[str] | None:
    """Literal runs at depth 0; None when the pattern has a top-level `|` or a POSIX class."""
    runs, run, depth, i = [], "", 0, 0
    while i < len(source):
        char = source[i]
        if depth == 0 and char not in _META:
            run += char
            i += 1
            continue
        if depth == 0 and char in _QUANTIFIERS:
            run = run[:-1]  # the character before a quantifier may be absent or repeated
        runs.append(run)
        run = ""
        i, depth = _skip(source, i, depth)
        if i < 0:
            return None
    return [*runs, run]


def _skip(source: str, i: int, depth: int) -> tuple[int, int]:
    """Past the item at `i`, which is no literal: (the index after it, the group depth
    there); the index is -1 for a pattern not read here."""
    char = source[i]
    if char == "[":
        return _class_end(source, i), depth
    if char == "\\":
        return i + 2, depth  # an escape: the run ends, whatever the character means
    if char in "()":
        depth += 1 if char == "(" else -1
        return (i + 1 if depth >= 0 else -1), depth
    if depth == 0 and char == "|":
        return -1, depth
    if depth == 0 and char == "{":  # a quantifier or fuzzy constraint: skipped whole
        end = source.find("}", i)
        return (end + 1 if end >= 0 else -1), depth
    return i + 1, depth


def _class_end(source: str, start: int) -> int:
    """The index after the character class opening at `start`; -1 for what is not read."""
    i = start + 1
    if source[i : i + 1] == "^":
        i += 1
    if source[i : i + 1] == "]":
        i += 1
    while i < len(source):
        char = source[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            return -1  # nested sets and POSIX classes: not read here
        if char == "]":
            return i + 1
        i += 1
    return -1
