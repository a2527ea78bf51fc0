"""The Debian packaging's sources: the unit, the man pages, the completion and the
files under packaging/, checked against the program they ship.

Fast and safe without root. What needs the built and installed package (lintian,
the unit under a real systemd, the rsyslog rule, purge) is in packaging/ci.sh.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from testpaths import ROOT

from logknock import cli, config_kinds, config_sequences
from logknock import config as config_module
from logknock.schema import Config

PACKAGING = ROOT / "packaging"
DEBIAN = PACKAGING / "debian"
UNIT = DEBIAN / "logknock.service"
MANPAGES = [PACKAGING / "man" / "logknock.8", PACKAGING / "man" / "logknock.yaml.5"]
COMPLETION = PACKAGING / "completions" / "logknock"
RSYSLOG = PACKAGING / "rsyslog" / "logknock.conf"
SHELL_SCRIPTS = [
    PACKAGING / "build-deb.sh",
    PACKAGING / "ci.sh",
    DEBIAN / "logknock.postinst",
    DEBIAN / "logknock.postrm",
]
MAX_EXPOSURE = 1.5
# The Debian package of each Python dependency in pyproject.toml.
DEBIAN_NAMES = {
    "systemd-python": "python3-systemd",
    "watchdog": "python3-watchdog",
    "regex": "python3-regex",
    "PyYAML": "python3-yaml",
    "sh": "python3-sh",
}
# What the issue asks of the unit: key -> every value it must hold.
UNIT_NEEDS = {
    "Type": ["notify"],
    "Restart": ["on-failure"],
    "After": ["nftables.service"],
    "ExecStartPre": ["/usr/bin/logknock check"],
    "ExecStart": ["/usr/bin/logknock run"],
    "ExecReload": ["/bin/kill -HUP $MAINPID"],
    "User": ["logknock"],
    "SupplementaryGroups": ["systemd-journal"],
    "AmbientCapabilities": ["CAP_NET_ADMIN"],
    "CapabilityBoundingSet": ["CAP_NET_ADMIN"],
    "NoNewPrivileges": ["yes"],
    "ProtectSystem": ["strict"],
    "StateDirectory": ["logknock"],
    "RuntimeDirectory": ["logknock"],
    "RestrictAddressFamilies": ["AF_UNIX AF_NETLINK"],
    "SystemCallFilter": ["@system-service"],
    "WantedBy": ["multi-user.target"],
}


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def unit_settings(path: Path = UNIT) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file, values in file order (keys may repeat)."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith(("#", ";", "[")):
            key, sep, value = line.partition("=")
            assert sep, f"{path}: not Key=value: {line!r}"
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


# --- the unit ------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "values"), UNIT_NEEDS.items(), ids=list(UNIT_NEEDS))
def test_unit_has_what_the_service_needs(key: str, values: list[str]) -> None:
    found = unit_settings().get(key, [])
    for value in values:
        assert any(value in setting.split() or value == setting for setting in found), found


def test_unit_capabilities_are_net_admin_alone() -> None:
    settings = unit_settings()
    assert settings["AmbientCapabilities"] == settings["CapabilityBoundingSet"] == ["CAP_NET_ADMIN"]


def test_unit_folders_are_the_daemons_defaults() -> None:
    settings, defaults = unit_settings(), Config()
    assert defaults.state_dir == "/var/lib/" + settings["StateDirectory"][0]
    assert Path(defaults.control_socket).parent == Path("/run", settings["RuntimeDirectory"][0])


def test_unit_user_is_the_sysusers_user() -> None:
    lines = (DEBIAN / "logknock.sysusers").read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("u ")]
    assert users == unit_settings()["User"]


def test_systemd_accepts_every_line_of_the_unit() -> None:
    """`verify` exits 0 even on misspelled keys: its output is the verdict. Before
    the package is installed it can only miss the program and the man pages."""
    tool = need("systemd-analyze")
    argv = [tool, "verify", str(UNIT)]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    not_installed = re.compile(
        r"logknock\.service: (Command /usr/bin/logknock is not executable: .*"
        r"|Command 'man logknock(\.yaml)?\([58]\)' failed with code \d+)"
    )
    lines = (out.stdout + out.stderr).splitlines()
    assert [line for line in lines if not not_installed.fullmatch(line)] == []


def test_unit_exposure_is_low() -> None:
    tool = need("systemd-analyze")
    argv = [tool, "security", "--offline=true", "--no-pager", str(UNIT)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    score = re.search(r"Overall exposure level for logknock\.service: ([0-9.]+)", out)
    assert score is not None, out
    assert float(score.group(1)) <= MAX_EXPOSURE, out


# --- man pages -----------------------------------------------------------------------


def render(page: Path) -> str:
    groff = need("groff")
    argv = [groff, "-man", "-ww", "-Tutf8", "-P-cbou", str(page)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert done.stderr == "", done.stderr
    return done.stdout


@pytest.mark.parametrize("page", MANPAGES, ids=lambda p: p.name)
def test_man_page_renders_without_warnings(page: Path) -> None:
    assert "NAME" in render(page)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each command's parser by its full name: 'check', 'patterns test', ..."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found.update({f"{name} {k}": v for k, v in subcommands(sub).items()})
    return found


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


COMMANDS = subcommands(cli.build_parser())


def roff(text: str) -> str:
    return text.replace("-", r"\-")


@pytest.mark.parametrize("command", COMMANDS, ids=list(COMMANDS))
def test_manual_describes_every_command_and_option(command: str) -> None:
    """Each command is the tag of a paragraph of its own (`.TP` then `.B name`)."""
    source, text = MANPAGES[0].read_text(), render(MANPAGES[0])
    names = [roff(command), roff(command.rsplit(maxsplit=1)[-1])]
    tags = [rf"^\.TP\n\.BI? {re.escape(name)}(\s|$)" for name in names]
    assert any(re.search(tag, source, re.MULTILINE) for tag in tags), command
    missing = {opt for opt in options(COMMANDS[command]) if opt not in text}
    assert missing <= {"-h", "--help"}, missing


CONFIG_KEYS = sorted(
    {
        *config_module.TOP_KEYS,
        *config_module.FILE_SOURCE_KEYS,
        *config_kinds.TOTP_KEYS,
        *config_sequences.SEQUENCE_KEYS,
        *config_sequences.DEFAULTS_KEYS,
    }
)


@pytest.mark.parametrize("key", CONFIG_KEYS)
def test_file_format_page_describes_every_key(key: str) -> None:
    assert re.search(rf"\b{key}\b", render(MANPAGES[1])), key


# --- bash completion -----------------------------------------------------------------


def complete(*words: str) -> list[str]:
    """What the completion offers after `logknock WORDS...` (the last word is the cursor's)."""
    bash = need("bash")
    script = (
        f'source "{COMPLETION}"; COMP_WORDS=(logknock "$@"); COMP_CWORD=$(($# ));'
        ' _logknock; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    argv = [bash, "--norc", "-c", script, "bash", *words]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()


def test_completion_is_valid_bash() -> None:
    subprocess.run([need("bash"), "-n", str(COMPLETION)], check=True)


def test_completion_offers_every_command() -> None:
    top = {name for name in COMMANDS if " " not in name}
    assert set(complete("")) == top | {"-h", "--help", "--version"}


@pytest.mark.parametrize("command", COMMANDS, ids=list(COMMANDS))
def test_completion_offers_every_option(command: str) -> None:
    assert set(complete(*command.split(), "-")) == options(COMMANDS[command])


def test_completion_offers_the_actions_of_patterns() -> None:
    actions = {name.split()[1] for name in COMMANDS if name.startswith("patterns ")}
    assert set(complete("patterns", "")) == actions


# --- the rest of packaging/ ----------------------------------------------------------


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse(script: Path) -> None:
    subprocess.run([need("sh"), "-n", str(script)], check=True)


def test_rsyslog_rule_takes_only_kernel_lines_with_the_default_prefix() -> None:
    condition = next(line for line in RSYSLOG.read_text().splitlines() if line.startswith("if "))
    assert '$inputname == "imklog"' in condition
    assert f'$msg contains "{Config().prefix}"' in condition


def test_logrotate_rotates_the_file_rsyslog_writes() -> None:
    written = re.search(r'file="([^"]+)"', RSYSLOG.read_text())
    assert written is not None
    assert f"{written.group(1)} {{" in (DEBIAN / "logknock.logrotate").read_text()


def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        project: dict[str, object] = tomllib.load(handle)["project"]
    return project


def test_package_depends_on_the_debian_name_of_each_dependency() -> None:
    control = (DEBIAN / "control").read_text()
    depends = control.partition("\nDepends:")[2].partition("\nSuggests:")[0]
    requirements = pyproject()["dependencies"]
    assert isinstance(requirements, list)
    for requirement in requirements:
        name = re.split(r"[<>=!~ ]", requirement)[0]
        assert DEBIAN_NAMES[name] in depends, name


def test_versions_agree() -> None:
    version = pyproject()["version"]
    changelog = (DEBIAN / "changelog").read_text().splitlines()[0]
    assert changelog.startswith(f"logknock ({version}-")
    for page in MANPAGES:
        assert f'"logknock {version}"' in page.read_text(), page
