"""Pattern packs: versioned regex sets that turn kernel messages into events.

A pack is a folder `patterns/<name>/` holding `pack.yaml` and a README that
names the firewall rules it expects. `pack.yaml` has a name, a semantic
version, a description, regex `fragments` (reusable pieces, referred to as
`%{name}`), the `patterns` (an id and a regex, written as a list of pieces that
are concatenated) and `checks` on the tokens of a line (keys the kernel never
repeats, keys that may appear at most twice, the order keys come in).

`patterns/index.yaml` records the sha256 digest of each released version's
`pack.yaml`: a pack whose content no longer matches its version's digest is
*modified* (edited without a new version), one whose version is not in the
index is *unreleased*.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import regex
import yaml

from .errors import PackError

REQUIRED_GROUPS = frozenset({"in", "out", "src", "dst", "proto"})
SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
FRAGMENT_REF = re.compile(r"%\{([A-Za-z0-9_]+)\}")
SHIPPED_DIRS = ("/etc/logknock/patterns", "/usr/share/logknock/patterns")


@dataclass(frozen=True, slots=True)
class Pattern:
    """One regex of a pack, compiled."""

    id: str
    source: str  # the regex text after fragment expansion
    compiled: Any  # regex.Pattern[str]; the regex stubs are not typed


@dataclass(frozen=True, slots=True)
class TokenChecks:
    """Structural checks on KEY=VALUE tokens outside quoted packets."""

    unique: frozenset[str] = frozenset()
    at_most_twice: frozenset[str] = frozenset()
    order: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Pack:
    """A loaded pattern pack: its compiled patterns, token checks and limits."""

    name: str
    version: str
    description: str
    path: Path
    content: bytes = field(repr=False)  # pack.yaml as it was loaded
    patterns: tuple[Pattern, ...]
    checks: TokenChecks = field(default_factory=TokenChecks)
    header: Any = None  # compiled regex that finds the IN= OUT= header
    max_message: int = 2048
    timeout: float = 0.05

    @property
    def digest(self) -> str:
        """`sha256:...` of pack.yaml as it was loaded (`index.yaml` records these)."""
        return _sha256(self.content)

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


def default_dirs() -> list[Path]:
    """Where packs are looked for, first match wins."""
    dirs = [Path(p) for p in os.environ.get("LOGKNOCK_PATTERNS", "").split(":") if p]
    source_tree = Path(__file__).resolve().parent.parent / "patterns"
    if source_tree.is_dir():
        dirs.append(source_tree)
    dirs += [Path(p) for p in SHIPPED_DIRS]
    return dirs


def search_dirs(patterns_dir: str | os.PathLike[str] | None) -> list[Path]:
    return [Path(patterns_dir)] if patterns_dir else default_dirs()


def _sha256(data: bytes) -> str:
    import hashlib  # OpenSSL's start-up (~3 ms) is paid only when a digest is asked for

    return "sha256:" + hashlib.sha256(data).hexdigest()


def split_spec(spec: str) -> tuple[str, str | None]:
    name, _, version = spec.partition("@")
    return name, version or None


def find_pack_dir(name: str, patterns_dir: str | os.PathLike[str] | None = None) -> Path:
    for base in search_dirs(patterns_dir):
        candidate = base / name / "pack.yaml"
        if candidate.is_file():
            return candidate.parent
    looked = ", ".join(str(d) for d in search_dirs(patterns_dir))
    raise PackError(f"pattern pack {name!r} not found (looked in {looked})")


def iter_pack_dirs(patterns_dir: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Every pack folder on the search path, each name once (first wins)."""
    seen: set[str] = set()
    for base in search_dirs(patterns_dir):
        for child in sorted(base.glob("*/pack.yaml")) if base.is_dir() else ():
            if child.parent.name not in seen:
                seen.add(child.parent.name)
                yield child.parent


def load_pack(spec: str = "netfilter", patterns_dir: str | os.PathLike[str] | None = None) -> Pack:
    """Load `name` or `name@version` (a version prefix such as `1` or `1.2` also fits)."""
    name, wanted = split_spec(spec)
    pack = load_pack_dir(find_pack_dir(name, patterns_dir))
    if wanted and not version_fits(pack.version, wanted):
        raise PackError(f"pack {name} is version {pack.version}, configuration wants {wanted}")
    return pack


def version_fits(version: str, wanted: str) -> bool:
    return version.split(".")[: len(wanted.split("."))] == wanted.split(".")


def load_pack_dir(path: Path) -> Pack:
    file = path / "pack.yaml"
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PackError(f"{file}: cannot read pack: {exc}") from exc
    if not isinstance(data, dict):
        raise PackError(f"{file}: a pack is a mapping with name, version and patterns")
    return _build(data, file)


def _build(data: Mapping[str, Any], file: Path) -> Pack:
    name, version = str(data.get("name", "")), str(data.get("version", ""))
    if name != file.parent.name:
        raise PackError(f"{file}: name {name!r} must equal its folder {file.parent.name!r}")
    if not SEMVER.match(version):
        raise PackError(f"{file}: version {version!r} is not a semantic version (1.2.3)")
    fragments = _fragments(data.get("fragments") or {}, file)
    limits = data.get("limits") or {}
    return Pack(
        name=name,
        version=version,
        description=str(data.get("description", "")).strip(),
        path=file.parent,
        content=file.read_bytes(),
        patterns=tuple(_pattern(p, fragments, file) for p in data.get("patterns") or ()),
        checks=_checks(data.get("checks") or {}),
        header=_compile(_expand(str(data.get("header", "")), fragments, file), file, "header"),
        max_message=int(limits.get("max_message", 2048)),
        timeout=float(limits.get("timeout_ms", 50)) / 1000,
    )


def _fragments(raw: Mapping[str, Any], file: Path) -> dict[str, str]:
    """Expand fragments in order, so a fragment may use the ones before it."""
    done: dict[str, str] = {}
    for key, value in raw.items():
        done[str(key)] = _expand(_joined(value), done, file)
    return done


def _joined(value: Any) -> str:
    return "".join(str(v) for v in value) if isinstance(value, list) else str(value)


def _expand(text: str, fragments: Mapping[str, str], file: Path) -> str:
    def replace(m: re.Match[str]) -> str:
        if m.group(1) not in fragments:
            raise PackError(f"{file}: unknown fragment %{{{m.group(1)}}}")
        return fragments[m.group(1)]

    return FRAGMENT_REF.sub(replace, text)


def _compile(source: str, file: Path, what: str) -> Any:
    try:
        return regex.compile(source, regex.V0)
    except regex.error as exc:
        raise PackError(f"{file}: {what}: bad regex: {exc}") from exc


def _pattern(raw: Any, fragments: Mapping[str, str], file: Path) -> Pattern:
    if not isinstance(raw, dict) or "id" not in raw or "regex" not in raw:
        raise PackError(f"{file}: each pattern needs an id and a regex")
    source = _expand(_joined(raw["regex"]), fragments, file)
    compiled = _compile(source, file, f"pattern {raw['id']}")
    missing = REQUIRED_GROUPS - set(compiled.groupindex)
    if missing:
        raise PackError(f"{file}: pattern {raw['id']} lacks groups {sorted(missing)}")
    return Pattern(id=str(raw["id"]), source=source, compiled=compiled)


def _checks(raw: Mapping[str, Any]) -> TokenChecks:
    return TokenChecks(
        unique=frozenset(raw.get("unique", ())),
        at_most_twice=frozenset(raw.get("at_most_twice", ())),
        order=tuple(raw.get("order", ())),
    )


def read_index(base: Path) -> dict[str, dict[str, str]]:
    """`index.yaml` of a patterns folder: {pack: {version: digest}}."""
    file = base / "index.yaml"
    if not file.is_file():
        return {}
    data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    return {str(k): {str(v): str(d) for v, d in (vs or {}).items()} for k, vs in data.items()}


def digest_state(pack: Pack) -> str:
    """`released` (digest matches), `modified` (edited in place), `unreleased`, `unindexed`."""
    versions = read_index(pack.path.parent).get(pack.name)
    if versions is None:
        return "unindexed"
    recorded = versions.get(pack.version)
    if recorded is None:
        return "unreleased"
    return "released" if recorded == pack.digest else "modified"
