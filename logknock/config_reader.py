"""Reading typed values out of `Node`s while collecting every problem.

The builders in config.py and config_sequences.py ask a `Reader` for each
setting; a bad value is noted with its position and the default stands in,
so one pass reports all problems of a file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from typing import TypeVar

from .config_values import describe, text
from .config_yaml import Node, Problems
from .errors import Location

T = TypeVar("T")
Fields = Mapping[str, Node]


def suggest(word: str, choices: Collection[str]) -> str:
    """ " (did you mean 'x'?)" for the closest choice, or ""."""
    import difflib  # only a mistyped name pays for it

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Reader:
    """Reads settings from one file's tree, noting problems instead of raising."""

    def __init__(self, path: str, problems: Problems) -> None:
        self.path = path
        self.base = os.path.dirname(os.path.abspath(path))
        self.problems = problems

    def error(self, loc: Location, message: str) -> None:
        self.problems.append((loc, message))

    def fields(self, node: Node | None, allowed: Collection[str], what: str) -> dict[str, Node]:
        """The keys of a mapping that have a value; unknown keys are noted."""
        if node is None or node.value is None:
            return {}
        if not isinstance(node.value, dict):
            self.error(node.loc, f"{what} must be a mapping, not {describe(node.value)}")
            return {}
        for key, child in node.value.items():
            if key not in allowed:
                self.error(child.key_loc, f"unknown key '{key}'{suggest(key, allowed)}")
        return {k: v for k, v in node.value.items() if k in allowed and v.value is not None}

    def get(self, fields: Fields, key: str, convert: Callable[[object], T], default: T) -> T:
        """`convert` applied to setting `key`; `default` when it is absent or wrong."""
        node = fields.get(key)
        return default if node is None else self.value(node, key, convert, default)

    def value(self, node: Node, key: str, convert: Callable[[object], T], default: T) -> T:
        """`convert` applied to the value of `node`, which setting `key` holds."""
        try:
            return convert(node.value)
        except ValueError as exc:
            self.error(node.loc, f"{key}: {exc}")
            return default

    def items(
        self, fields: Fields, key: str, convert: Callable[[object], T]
    ) -> tuple[T, ...] | None:
        """Each item of list `key` converted (a single value is a list of one).

        None when any item is wrong, so later checks do not judge half a list.
        """
        node = fields.get(key)
        if node is None:
            return ()
        nodes = node.value if isinstance(node.value, list) else [node]
        found: list[T] = []
        for item in nodes:
            try:
                found.append(convert(item.value))
            except ValueError as exc:
                self.error(item.loc, f"{key}: {exc}")
        return tuple(found) if len(found) == len(nodes) else None

    def resolve(self, value: object) -> str:
        """A path; a relative one counts from the configuration file's folder."""
        return os.path.normpath(os.path.join(self.base, text(value)))

    def read(self, node: Node, path: str, what: str) -> bytes | None:
        """The bytes of file `path` that setting `node` names, or None after noting why not."""
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except OSError as exc:
            self.error(node.loc, f"{what}: cannot read {path}: {exc.strerror or exc}")
            return None
