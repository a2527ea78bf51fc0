"""Pieces every envelope parser shares: names, rejections and small text helpers."""

from __future__ import annotations

import re

from ..models import Envelope, Origin, Rejection

Result = Envelope | Rejection | None  # None: the line is not in this envelope's form

# syslog(3) names as dmesg -x and busybox print them.
FACILITIES = "kern|user|mail|daemon|auth|syslog|lpr|news|uucp|cron|authpriv|ftp|res[0-3]|local[0-7]"
LEVELS = "emerg|alert|crit|err|warn|notice|info|debug|panic|error|warning"

NO_MESSAGE = Rejection("no-message", "the envelope holds no message")
TEXT_FILE = "text file: cannot prove the kernel wrote it"
_RAW_NOTE = f"no envelope, {TEXT_FILE}"

# The kernel's own "[   83.325088] " that imklog and klogd keep at the start of the message.
_KERNEL_STAMP = re.compile(r"\[ *\d{1,12}\.\d{1,9}\] ", re.ASCII)
_DICTIONARY = re.compile(r" [A-Z_][A-Z0-9_]*=", re.ASCII)


def strip_kernel_stamp(message: str) -> str:
    m = _KERNEL_STAMP.match(message)
    return message[m.end() :] if m else message


def indented(line: str) -> Rejection:
    """A line that starts with white space continues the entry above it: never judge it alone."""
    if _DICTIONARY.match(line):
        return Rejection("kmsg-continuation", "a /dev/kmsg dictionary line (' KEY=value')")
    return Rejection("indented", "starts with white space: part of a multi-line entry")


def raw(line: str) -> Envelope:
    """A line with no header we know: the whole line is the message."""
    return Envelope("raw", Origin.UNKNOWN, line, note=_RAW_NOTE)
