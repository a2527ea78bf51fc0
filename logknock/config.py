"""Loading /etc/logknock/logknock.yaml into the frozen objects of schema.py.

    load(path) -> Config                     raises ConfigError listing every problem
    load_text(text, path) -> Config
    load_with_marks(path) -> (Config, Marks)  Marks: where each setting was written
    parse_step("9000/tcp:syn,!ack") -> Step

The work is split by layer: config_yaml turns text into positioned nodes,
config_values converts single values, config_reader walks nodes collecting
problems, config_sequences and config_kinds build the sequences, and
config_check finds what `logknock check` warns about. Relative paths count
from the folder of the configuration file.
"""

from __future__ import annotations

import os

from . import config_values as values
from .config_path import DEFAULT_PATH
from .config_reader import Reader, suggest
from .config_sequences import read_defaults, read_sequences
from .config_values import parse_step
from .config_yaml import Marks, Node, parse
from .envelope import ENVELOPES
from .errors import ConfigError, Location
from .schema import Bruteforce, Config, Limits, SourceSpec

__all__ = ["DEFAULT_PATH", "Marks", "load", "load_text", "load_with_marks", "parse_step"]

TOP_KEYS = (
    "source",
    "prefix",
    "pack",
    "patterns_dir",
    "state_dir",
    "hooks_dir",
    "control_socket",
    "hook_timeout",
    "duplicate_window",
    "close_on_stop",
    "defaults",
    "bruteforce",
    "limits",
    "sequences",
)
SOURCE_KINDS = ("journal", "kmsg", "file")
FILE_SOURCE_KEYS = ("file", "trust", "envelope")
TRUST_LEVELS = ("kernel-only",)
_DEFAULT = Config()


def load(path: str | os.PathLike[str]) -> Config:
    """The configuration in file `path`; ConfigError lists every problem found."""
    return load_with_marks(path)[0]


def load_text(text: str, path: str = "<string>") -> Config:
    """The configuration in `text`, as if read from `path` (for messages and relative paths)."""
    return load_text_with_marks(text, path)[0]


def load_with_marks(path: str | os.PathLike[str]) -> tuple[Config, Marks]:
    """The configuration in file `path`, and where each of its settings was written."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError([(Location(name), f"cannot read: {exc.strerror or exc}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([(Location(name), f"not UTF-8 text (byte {exc.start})")]) from None
    return load_text_with_marks(text, name)


def load_text_with_marks(text: str, path: str = "<string>") -> tuple[Config, Marks]:
    root, problems = parse(text, path)
    config = _build(Reader(path, problems), root)
    if problems:
        raise ConfigError(sorted(problems, key=lambda problem: _order(path, problem[0])))
    return config, Marks.of(path, root)


def _order(path: str, loc: Location) -> tuple[bool, str, int, int]:
    """Problems in the configuration file first, each file's in text order."""
    return loc.path != path, loc.path, loc.line or 0, loc.column or 0


def _build(r: Reader, root: Node) -> Config:
    f = r.fields(root, TOP_KEYS, "the configuration")
    hooks_dir = r.get(f, "hooks_dir", r.resolve, _DEFAULT.hooks_dir)
    window = r.get(f, "duplicate_window", values.duration(0, strict=False), 1.0)
    defaults = read_defaults(r, f.get("defaults"), hooks_dir, window)
    return Config(
        path=r.path,
        sources=_sources(r, f.get("source")),
        prefix=r.get(f, "prefix", values.prefix, _DEFAULT.prefix),
        pack=r.get(f, "pack", values.pack, _DEFAULT.pack),
        patterns_dir=r.get(f, "patterns_dir", r.resolve, None),
        state_dir=r.get(f, "state_dir", r.resolve, _DEFAULT.state_dir),
        hooks_dir=hooks_dir,
        control_socket=r.get(f, "control_socket", r.resolve, _DEFAULT.control_socket),
        hook_timeout=r.get(f, "hook_timeout", values.duration(0), _DEFAULT.hook_timeout),
        duplicate_window=window,
        close_on_stop=r.get(f, "close_on_stop", values.boolean, _DEFAULT.close_on_stop),
        bruteforce=_bruteforce(r, f.get("bruteforce")),
        limits=_limits(r, f.get("limits")),
        sequences=read_sequences(r, f.get("sequences"), defaults),
    )


def _bruteforce(r: Reader, node: Node | None) -> Bruteforce:
    f = r.fields(node, ("max_failures", "window", "ban_for"), "bruteforce")
    base = Bruteforce()
    return Bruteforce(
        max_failures=r.get(f, "max_failures", values.integer(1), base.max_failures),
        window=r.get(f, "window", values.duration(0), base.window),
        ban_for=r.get(f, "ban_for", values.duration(0), base.ban_for),
    )


def _limits(r: Reader, node: Node | None) -> Limits:
    f = r.fields(node, ("max_tracked",), "limits")
    return Limits(r.get(f, "max_tracked", values.integer(1), Limits().max_tracked))


def _sources(r: Reader, node: Node | None) -> tuple[SourceSpec, ...]:
    if node is None:
        return _DEFAULT.sources
    items = node.value if isinstance(node.value, list) else [node]
    if not items:
        r.error(node.loc, "source: needs at least one source")
    specs: list[SourceSpec] = []
    for item in items:
        spec = _source(r, item)
        if spec is not None and (spec.kind, spec.path) in {(s.kind, s.path) for s in specs}:
            r.error(item.loc, f"source: {spec.path or spec.kind} is listed twice")
        elif spec is not None:
            specs.append(spec)
    return tuple(specs)


def _source(r: Reader, node: Node) -> SourceSpec | None:
    if isinstance(node.value, dict):
        return _file_source(r, node)
    if not isinstance(node.value, str):
        found = values.describe(node.value)
        r.error(node.loc, f"source: expected journal, kmsg or file:/path, not {found}")
        return None
    kind, colon, path = node.value.partition(":")
    if kind == "file" and colon and path:
        return SourceSpec("file", r.resolve(path))
    if kind == "file" and colon:
        r.error(node.loc, "source: file: needs a path, like file:/var/log/kern.log")
        return None
    if node.value in ("journal", "kmsg"):
        return SourceSpec(node.value)
    hint = suggest(kind, SOURCE_KINDS)
    r.error(
        node.loc, f"source: unknown source '{node.value}'{hint}; use journal, kmsg or file:/path"
    )
    return None


def _file_source(r: Reader, node: Node) -> SourceSpec | None:
    f = r.fields(node, FILE_SOURCE_KEYS, "a file source")
    if "file" not in f:
        r.error(node.loc, "source: a mapping source needs file: /path")
        return None
    return SourceSpec(
        "file",
        r.get(f, "file", r.resolve, None),
        trust=r.get(f, "trust", values.choice(*TRUST_LEVELS), None),
        envelope=r.get(f, "envelope", values.choice(*ENVELOPES), "auto"),
    )
