"""Converting a knockd.conf into a logknock configuration and hook scripts.

    convert(path, output_dir, open_for=3600.0, mark_dir=...) -> Conversion
    write_conversion(conversion, output_dir, force=False) -> list[Path]

The work is split by layer: knockd_conf reads knockd.conf as knockd does,
knockd_plan decides what each section becomes, knockd_shell and knockd_hook
write the hook scripts, knockd_yaml the configuration. `convert` then loads
the result with logknock's own loader; a sequence it refuses is left out
(commented out, with the reason as a warning), so the configuration written
is one the daemon accepts.

One-time sequence files are referenced where they are, not copied: they are
in the format logknock reads, knockd has already commented out the lines it
used (logknock skips them), and logknock records the lines it uses in its
own state without writing the file, so one file stays the only list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from .config import load_text
from .config_check import WARNING, Finding
from .errors import ConfigError, Location, LogknockError
from .knockd_conf import read_knockd
from .knockd_hook import DEFAULT_MARK_DIR
from .knockd_plan import Plan, plan_doors
from .knockd_yaml import HOOKS_DIR, render_config

CONFIG_NAME = "logknock.yaml"
DEFAULT_OPEN_FOR = 3600.0


@dataclass(frozen=True, slots=True)
class Conversion:
    source: str
    config: str  # the text of logknock.yaml
    hooks: tuple[tuple[str, str], ...]  # (file name in hooks/, script)
    findings: tuple[Finding, ...]
    sequences: int  # converted
    left_out: int  # written commented out


def convert(
    path: str,
    output_dir: str,
    open_for: float = DEFAULT_OPEN_FOR,
    mark_dir: str = DEFAULT_MARK_DIR,
) -> Conversion:
    """Convert the knockd.conf at `path`; ConfigError when knockd could not read it either."""
    knockd = read_knockd(_read(path), path)
    plans, planned = plan_doors(knockd, open_for, mark_dir)
    found = [*knockd.findings, *planned]
    target = os.path.join(output_dir, CONFIG_NAME)
    for _ in range(len(plans) + 1):
        text, spans = render_config(path, plans, _ordered(found))
        refused = _refused(text, target, plans, spans)
        if not refused:
            return _conversion(path, text, plans, _ordered(found))
        plans = [_leave_out(path, plan, refused.get(plan.name), found) for plan in plans]
    raise LogknockError(f"{path}: the converted configuration still has problems")


def _read(path: str) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([(Location(path), f"cannot read: {exc.strerror or exc}")]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([(Location(path), f"not UTF-8 text (byte {exc.start})")]) from None


def _ordered(found: list[Finding]) -> list[Finding]:
    return sorted(found, key=lambda finding: finding.loc.line or 0)


def _refused(text: str, target: str, plans: list[Plan], spans: dict[str, range]) -> dict[str, str]:
    """The sequences logknock's loader refuses, with its first reason for each."""
    try:
        load_text(text, target)
    except ConfigError as exc:
        refused: dict[str, str] = {}
        for loc, message in exc.problems:
            name = _owner(loc, target, plans, spans)
            if name is None:
                raise LogknockError(f"the converted configuration is not usable: {exc}") from None
            reason = message if loc.path == target else f"{loc}: {message}"
            refused.setdefault(name, reason)
        return refused
    return {}


def _owner(loc: Location, target: str, plans: list[Plan], spans: dict[str, range]) -> str | None:
    """The sequence a problem belongs to: by line in our text, or by its one-time file."""
    for plan in plans:
        in_block = loc.path == target and (loc.line or 0) in spans[plan.name]
        if in_block or (plan.door.one_time is not None and loc.path == plan.door.one_time):
            return plan.name
    return None


def _leave_out(path: str, plan: Plan, reason: str | None, found: list[Finding]) -> Plan:
    if reason is None:
        return plan
    where = Location(path, plan.door.line)
    message = f"[{plan.door.name}] left out: logknock refuses it: {reason}"
    found.append(Finding(WARNING, where, message))
    return replace(plan, left_out=f"logknock refuses it: {reason}")


def _conversion(path: str, text: str, plans: list[Plan], found: list[Finding]) -> Conversion:
    hooks = tuple((p.hook.file_name, p.script) for p in plans if p.hook and p.script)
    left_out = sum(1 for plan in plans if plan.left_out is not None)
    return Conversion(path, text, hooks, tuple(found), len(plans) - left_out, left_out)


def write_conversion(conversion: Conversion, output_dir: str, force: bool = False) -> list[Path]:
    """Write logknock.yaml and hooks/knockd-* (0755); refuse to overwrite unless `force`."""
    folder = Path(output_dir)
    files = [(folder / CONFIG_NAME, conversion.config, 0o644)]
    files += [(folder / HOOKS_DIR / name, script, 0o755) for name, script in conversion.hooks]
    existing = [str(path) for path, _, _ in files if path.exists()]
    if existing and not force:
        raise LogknockError(f"would overwrite {', '.join(existing)} (use --force)")
    (folder / HOOKS_DIR).mkdir(mode=0o755, parents=True, exist_ok=True)
    for path, text, mode in files:
        _write(path, text, mode)
    return [path for path, _, _ in files]


def _write(path: Path, text: str, mode: int) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)
