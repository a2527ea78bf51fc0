"""YAML text to a tree of `Node`s that remember where each value was written.

PyYAML's composer keeps positions but resolves nothing; its constructor
resolves values but forgets positions and silently keeps the last of two
equal keys. This module composes the text, builds each scalar with the safe
constructor, and keeps line and column beside every value, reporting
duplicate keys and keys that are not text.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import yaml
from yaml.constructor import SafeConstructor

from .errors import ConfigError, Location

MAX_NODES = 100_000  # aliases can make a short text expand enormously
_MERGE_TAG = "tag:yaml.org,2002:merge"

Problems = list[tuple[Location, str]]


@dataclass(frozen=True, slots=True)
class Node:
    """A value and where it was written.

    `value` is None, bool, int, float, str (or another scalar YAML made), a
    list of Nodes, or a dict from key text to Nodes.
    """

    value: object
    loc: Location  # where the value starts
    key_loc: Location  # where the key naming it starts (`loc` for list items and the root)
    path: str  # "sequences.ssh.knock.0"; "" for the root

    def children(self) -> Iterator[Node]:
        if isinstance(self.value, dict):
            yield from self.value.values()
        elif isinstance(self.value, list):
            yield from self.value


def parse(text: str, path: str) -> tuple[Node, Problems]:
    """The tree for `text` and the problems met building it.

    Raise ConfigError when the text is not YAML at all.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_syntax_problem(exc, path)]) from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError([_reader_problem(exc, text, path)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([(Location(path), f"not readable as YAML: {exc}")]) from None
    except RecursionError:
        raise ConfigError([(Location(path), "nested too deeply")]) from None
    builder = _Builder(path)
    start = Location(path, 1, 1)
    tree = builder.build(root, "", start, ()) if root else Node(None, start, start, "")
    return tree, builder.problems


def _syntax_problem(exc: yaml.MarkedYAMLError, path: str) -> tuple[Location, str]:
    mark = exc.problem_mark or exc.context_mark
    where = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
    message = exc.problem or "not valid YAML"
    if exc.context:
        message = f"{message} ({exc.context})"
    return where, f"YAML syntax: {message}"


def _reader_problem(exc: yaml.reader.ReaderError, text: str, path: str) -> tuple[Location, str]:
    before = text[: exc.position]
    where = Location(path, before.count("\n") + 1, exc.position - before.rfind("\n"))
    character = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return where, f"YAML cannot hold character U+{character:04X}"


class _Builder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: Problems = []
        self.count = 0
        self.constructor = SafeConstructor()

    def loc(self, node: yaml.Node) -> Location:
        return Location(self.path, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: yaml.Node, path: str, key_loc: Location, active: tuple[int, ...]) -> Node:
        self.count += 1
        if self.count > MAX_NODES:
            raise ConfigError([(self.loc(node), f"more than {MAX_NODES} values (alias bomb?)")])
        if id(node) in active:
            self.problems.append((self.loc(node), "an alias refers to a value that contains it"))
            return Node(None, self.loc(node), key_loc, path)
        inner = (*active, id(node))
        if isinstance(node, yaml.MappingNode):
            value: object = self.mapping(node, path, inner)
        elif isinstance(node, yaml.SequenceNode):
            value = [
                self.build(item, _join(path, i), self.loc(item), inner)
                for i, item in enumerate(node.value)
            ]
        else:
            assert isinstance(node, yaml.ScalarNode)  # the composer makes only these three kinds
            value = self.scalar(node)
        return Node(value, self.loc(node), key_loc, path)

    def mapping(
        self, node: yaml.MappingNode, path: str, active: tuple[int, ...]
    ) -> dict[str, Node]:
        found: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key, where = self.key(key_node), self.loc(key_node)
            if key is None:
                continue
            if key in found:
                first = found[key].key_loc.line
                self.problems.append((where, f"duplicate key '{key}' (first at line {first})"))
            else:
                found[key] = self.build(value_node, _join(path, key), where, active)
        return found

    def key(self, node: yaml.Node) -> str | None:
        """The text of a mapping key, or None after noting why it is not usable."""
        before = len(self.problems)
        if node.tag == _MERGE_TAG:
            self.problems.append((self.loc(node), "merge keys (<<) are not supported"))
            return None
        key = self.scalar(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(key, str) and len(self.problems) == before:
            shown = repr(key) if isinstance(node, yaml.ScalarNode) else "a collection"
            self.problems.append((self.loc(node), f"a key must be text, not {shown}: quote it"))
        return key if isinstance(key, str) else None

    def scalar(self, node: yaml.ScalarNode) -> object:
        """The value YAML makes of `node`; its plain text after noting why it cannot."""
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            message = f"unknown YAML tag '{node.tag}' (quote a value that starts with '!')"
        except ValueError as exc:
            message = f"cannot read this value: {exc}"
        self.problems.append((self.loc(node), message))
        return node.value


def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


@dataclass(frozen=True, slots=True)
class Marks:
    """Where each configuration path ("sequences.ssh.knock.2") was written.

    A path maps to the position of its key (of the item, in a list), so a
    message points at the line that names the setting.
    """

    file: str
    table: Mapping[str, Location]

    @classmethod
    def of(cls, file: str, root: Node) -> Marks:
        table: dict[str, Location] = {}
        stack = [root]
        while stack:
            node = stack.pop()
            table.setdefault(node.path, node.key_loc)
            stack.extend(node.children())
        return cls(file, table)

    def __contains__(self, path: str) -> bool:
        return path in self.table

    def __call__(self, path: str) -> Location:
        """The position of `path`, or of the nearest enclosing setting that was written."""
        while path not in self.table and "." in path:
            path = path.rpartition(".")[0]
        return self.table.get(path, Location(self.file))
