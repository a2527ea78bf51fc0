"""`logknock import-knockd`: convert a knockd.conf into a logknock configuration.

    logknock import-knockd /etc/knockd.conf [--output-dir DIR] [--force]

Writes DIR/logknock.yaml and DIR/hooks/knockd-NAME (one hook per section,
running its knockd commands). Every knockd setting that does not carry over
as it was is a warning on stderr, `FILE:LINE: warning: ...`, and is listed at
the top of the configuration too. Exit 0 when converted (warnings allowed),
2 when knockd.conf cannot be read, 1 when an output file exists (--force
overwrites).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from .config_values import duration
from .errors import EXIT_OK, UsageError
from .knockd_hook import DEFAULT_MARK_DIR
from .knockd_import import CONFIG_NAME, DEFAULT_OPEN_FOR, Conversion, convert, write_conversion


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import-knockd",
        help="convert a knockd.conf into a logknock configuration and hooks",
        description="Convert a knockd.conf: each section becomes a sequence whose hook runs "
        "the section's commands. What does not carry over is reported as a warning.",
    )
    parser.add_argument("knockd_conf", metavar="KNOCKD_CONF", help="e.g. /etc/knockd.conf")
    parser.add_argument(
        "--output-dir",
        "-o",
        default=".",
        metavar="DIR",
        help=f"where to write {CONFIG_NAME} and hooks/ (default: the current folder)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument(
        "--open-for",
        default="1h",
        metavar="DURATION",
        help="how long a grant stays open when knockd closed it only by another knock "
        "(default: 1h)",
    )
    parser.add_argument(
        "--mark-dir",
        default=DEFAULT_MARK_DIR,
        metavar="DIR",
        help=f"where the hooks note which addresses they opened (default: {DEFAULT_MARK_DIR})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    open_for = _open_for(args.open_for)
    conversion = convert(args.knockd_conf, args.output_dir, open_for, args.mark_dir)
    written = write_conversion(conversion, args.output_dir, args.force)
    for finding in conversion.findings:
        print(finding, file=sys.stderr)
    print(_summary(conversion, str(written[0])))
    return EXIT_OK


def _open_for(text: str) -> float:
    try:
        return duration(0)(text) if text else DEFAULT_OPEN_FOR
    except ValueError as exc:
        raise UsageError(f"--open-for: {exc}") from None


def _summary(conversion: Conversion, config: str) -> str:
    counts = f"{conversion.sequences} sequence(s), {len(conversion.hooks)} hook(s)"
    if conversion.left_out:
        counts += f", {conversion.left_out} left out"
    counts += f", {len(conversion.findings)} warning(s)"
    return (
        f"logknock: converted {conversion.source} into {config} ({counts}); "
        f"check it with: logknock check --config {config}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command alone (`python -m logknock.cmd_import`), as the CLI would."""
    parser = argparse.ArgumentParser(prog="logknock")
    register(parser.add_subparsers(dest="command", required=True))
    from .cli import run_command

    return run_command(
        parser.parse_args(["import-knockd", *(sys.argv[1:] if argv is None else argv)])
    )


if __name__ == "__main__":
    raise SystemExit(main())
