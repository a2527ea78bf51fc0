"""logknock's exceptions, and the one table that maps them to exit codes.

    LogknockError                 anything logknock reports and exits on (exit 1)
    ├── UsageError                bad command-line use (exit 2)
    ├── ConfigError               the configuration cannot be used (exit 2)
    │   └── carries file:line:column of each problem
    ├── PackError                 a pattern pack cannot be loaded (exit 2)
    └── SourceError               a log source cannot be read (exit 1)

Bad *input lines* are never exceptions that reach the top: the matcher turns
them into a `Rejection`, counted and reported, and the daemon goes on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a file a problem is; line and column count from 1."""

    path: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.path]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


class LogknockError(Exception):
    """Base of everything logknock reports to the operator and exits on."""

    exit_code = 1


class UsageError(LogknockError):
    exit_code = 2


class ConfigError(LogknockError):
    """One or more problems that make a configuration unusable."""

    exit_code = 2

    def __init__(self, problems: list[tuple[Location, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{loc}: error: {msg}" for loc, msg in problems))


class PackError(LogknockError):
    exit_code = 2


class SourceError(LogknockError):
    exit_code = 1


EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_UNUSABLE = 2
EXIT_INTERRUPTED = 130


def exit_code_for(exc: BaseException) -> int:
    """The single place that decides what a failure exits with."""
    if isinstance(exc, LogknockError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        return EXIT_OK
    return EXIT_FAILURE
