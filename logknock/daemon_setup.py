"""What `logknock run` checks and builds before its loop starts: the refused-when-
unsafe configuration, the sources, and warnings about the host's set-up."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from . import config as config_loader
from .config_check import errors as config_errors
from .errors import ConfigError
from .packs import load_pack
from .schema import Config, SourceSpec
from .sources.base import Source

log = logging.getLogger("logknock")

NF_LOG_ALL_NETNS = Path("/proc/sys/net/netfilter/nf_log_all_netns")
JOURNAL_DIRS = (Path("/var/log/journal"), Path("/run/log/journal"))


def load_config(path: str) -> Config:
    """The configuration, refused when the daemon could not run it safely."""
    config, marks = config_loader.load_with_marks(path)
    problems = config_errors(config, marks)
    if problems:
        raise ConfigError(problems)
    load_pack(config.pack, config.patterns_dir)
    return config


def build_source(spec: SourceSpec, resume: str | None, since: float) -> Source:
    from .sources.file import FileSource
    from .sources.journal import JournalSource
    from .sources.kmsg import KmsgSource

    if spec.kind == "journal":
        return JournalSource(resume, since, spec.path)
    if spec.kind == "kmsg":
        return (
            KmsgSource(resume, since) if spec.path is None else KmsgSource(resume, since, spec.path)
        )
    trusted = spec.trust == "kernel-only"
    return FileSource(str(spec.path), trusted=trusted, envelope=spec.envelope, resume=resume)


def source_name(spec: SourceSpec) -> str:
    return f"file:{spec.path}" if spec.kind == "file" else spec.kind


def warn_about_journal(config: Config) -> None:
    """Without read access to the journal files the journal source reads nothing,
    silently: say so at start."""
    if not any(spec.kind == "journal" and spec.path is None for spec in config.sources):
        return
    for folder in JOURNAL_DIRS:
        if folder.is_dir() and not os.access(folder, os.R_OK | os.X_OK):
            log.warning(
                "cannot read the journal in %s: the journal source will see nothing; "
                "run logknock as root or in group systemd-journal", folder
            )  # fmt: skip


def warn_about_namespaces() -> None:
    try:
        value = NF_LOG_ALL_NETNS.read_text().strip()
    except OSError:
        return
    if value == "1":
        log.warning(
            "net.netfilter.nf_log_all_netns=1: any user who can create a network namespace "
            "can make the kernel log lines with our prefix; set it to 0 unless you need it"
        )
