"""knockd's command text: `%IP%` made safe, and what the command opens.

knockd put the knocking address in place of each `%IP%` and handed the text
to /bin/sh, so the address became part of the shell code. The generated
hooks keep the operator's command text but put a reference to the shell
variable `ip` where `%IP%` was, written for the quoting context around it:

    unquoted             %IP%      ->  "$ip"
    in '...'             '%IP%'    ->  '"$ip"'   (close the quote, add, reopen)
    in "..."             "%IP%"    ->  "${ip}"
    in $(...), `...`     the same rules again, for the quotes inside

The shell expands a variable once and never reads its value as code, so the
address stays data whatever it holds (the hook also checks it first).

    substitute_ip(command) -> str          ValueError on an unterminated quote
    infer_ports(command) -> PortSpecs      what `--dport 22` and the like open
    is_inverse(opener, closer) -> bool     `iptables -A ...` and `iptables -D ...`
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from .schema import PortSpec

IP = "%IP%"
_WORD, _SINGLE, _DOUBLE = "word", "single", "double"
_QUOTED = '"$ip"'
_IN_SINGLE = "'\"$ip\"'"
_IN_DOUBLE = "${ip}"
_DOUBLE_ESCAPES = '$`"\\'
_WORD_START = " \t;&|()<>"
_NAMES = {"'": "' quote", '"': '" quote', "`": "` command substitution", ")": "(", "}": "${"}


@dataclass(frozen=True, slots=True)
class _Context:
    closer: str  # the character that ends it ("" for the whole command)
    mode: str  # how quotes and backslashes work inside: word, single or double
    ip: str  # what %IP% becomes inside


def substitute_ip(command: str) -> str:
    """`command` with each %IP% replaced by a reference to $ip fit for its quoting."""
    stack = [_Context("", _WORD, _QUOTED)]
    out: list[str] = []
    at = 0
    while at < len(command):
        if command.startswith(IP, at):
            out.append(stack[-1].ip)
            at += len(IP)
        else:
            at = _STEPS[stack[-1].mode](command, at, stack, out)
    if len(stack) > 1:
        raise ValueError(f"unterminated {_NAMES[stack[-1].closer]}")
    return "".join(out)


def _single(command: str, at: int, stack: list[_Context], out: list[str]) -> int:
    if command[at] == "'":
        stack.pop()
    out.append(command[at])
    return at + 1


def _double(command: str, at: int, stack: list[_Context], out: list[str]) -> int:
    char, pair = command[at], command[at : at + 2]
    if char == "\\":
        size = 2 if pair[1:] and pair[1] in _DOUBLE_ESCAPES else 1
        out.append(command[at : at + size])
        return at + size
    if char == stack[-1].closer:
        stack.pop()
    elif pair in ("$(", "${") or char == "`":
        return _open_nested(command, at, stack, out, _IN_DOUBLE)
    out.append(char)
    return at + 1


def _word(command: str, at: int, stack: list[_Context], out: list[str]) -> int:
    char, pair = command[at], command[at : at + 2]
    if char == "\\":
        return _escaped(command, at, stack, out)
    if char == "#" and (at == 0 or command[at - 1] in _WORD_START):
        out.append(command[at:])  # a comment: the rest of the line
        return len(command)
    if char == stack[-1].closer and char in ")}`":
        stack.pop()
    elif char == "'":
        stack.append(_Context("'", _SINGLE, _IN_SINGLE))
    elif char == '"':
        stack.append(_Context('"', _DOUBLE, _IN_DOUBLE))
    elif pair in ("$(", "${") or char in "(`":
        return _open_nested(command, at, stack, out, _QUOTED)
    out.append(char)
    return at + 1


def _escaped(command: str, at: int, stack: list[_Context], out: list[str]) -> int:
    """A backslash outside quotes: it keeps the next character literal."""
    if command.startswith(IP, at + 1):  # knockd's \198.51.100.7 loses the backslash too
        out.append(stack[-1].ip)
        return at + 1 + len(IP)
    if at + 1 == len(command):
        raise ValueError("ends with a backslash")
    out.append(command[at : at + 2])
    return at + 2


def _open_nested(command: str, at: int, stack: list[_Context], out: list[str], ip: str) -> int:
    """`$(`, `(`, `${` or a backquote: a context that a later character closes."""
    opener = command[at : at + 2] if command[at] == "$" else command[at]
    closer = {"$(": ")", "(": ")", "${": "}", "`": "`"}[opener]
    mode = _DOUBLE if opener == "${" and ip == _IN_DOUBLE else _WORD
    stack.append(_Context(closer, mode, _QUOTED if opener in ("$(", "(") else ip))
    out.append(opener)
    return at + len(opener)


_STEPS = {_WORD: _word, _SINGLE: _single, _DOUBLE: _double}

# --- which ports a command opens ---------------------------------------------------

_PROTO_OPTION = re.compile(r"(?:^|\s)(?:-p|--proto(?:col)?)[\s=]+(tcp|udp)\b", re.IGNORECASE)
_PORT_PATTERNS = (
    # iptables: --dport 22, --destination-port 22, multiport --dports 22,443
    re.compile(r"--d(?:estination-)?ports?[\s=]+(?P<ports>[\d,]+)(?![\d:-])"),
    # nft: tcp dport 22, udp dport { 22, 443 }
    re.compile(r"\b(?P<proto>tcp|udp)\s+dport\s+(?P<ports>\{[\d,\s]+\}|\d+)(?![\d:-])"),
    # ipset hash:ip,port entries: %IP%,tcp:22
    re.compile(r",(?P<proto>tcp|udp):(?P<ports>\d+)\b"),
    # nft concatenated set elements: %IP% . tcp . 22
    re.compile(r"\.\s*(?P<proto>tcp|udp)\s*\.\s*(?P<ports>\d+)\b"),
)


def infer_ports(command: str) -> tuple[PortSpec, ...]:
    """The ports `command` visibly opens, in order; () when it does not say."""
    option = _PROTO_OPTION.search(command)
    default = option.group(1).lower() if option else "tcp"
    found: list[PortSpec] = []
    for pattern in _PORT_PATTERNS:
        for match in pattern.finditer(command):
            proto = (match.groupdict().get("proto") or default).lower()
            numbers = re.findall(r"\d+", match.group("ports"))
            found += [PortSpec(int(n), proto) for n in numbers if 1 <= int(n) <= 65535]
    return tuple(dict.fromkeys(found))


# --- commands that undo each other ---------------------------------------------------

_ADD = {"-A", "--append", "-I", "--insert", "add", "insert"}
_DELETE = {"-D", "--delete", "del", "delete"}


def is_inverse(opener: str, closer: str) -> bool:
    """Whether `closer` deletes what `opener` adds: the same words but one, where
    the opener adds (iptables -A/-I, ipset/nft add) and the closer deletes."""
    adds, deletes = _words(opener), _words(closer)
    if adds is None or deletes is None or len(adds) != len(deletes):
        return False
    differ = [(a, d) for a, d in zip(adds, deletes, strict=True) if a != d]
    return len(differ) == 1 and differ[0][0] in _ADD and differ[0][1] in _DELETE


def _words(command: str) -> list[str] | None:
    """The command's words, without the rule number of `iptables -I CHAIN N`."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    for at, word in enumerate(words[:-2]):
        if word in ("-I", "--insert") and words[at + 2].isdigit():
            return words[: at + 2] + words[at + 3 :]
    return words
