"""Splitting a shell line into words, as a POSIX shell does for the subset the language uses.

Words are separated by blanks; ``'...'`` quotes literally, ``"..."`` quotes but expands
``$NAME``, ``${NAME}``, ``$!`` and ``$$``; a backslash quotes the next character; an unquoted
``#`` at the start of a word starts a comment; unquoted ``>`` and ``>>`` redirect the output
of the command to the word that follows; ``NAME=VALUE`` as a whole command assigns a variable.
Anything else a shell would do (pipes, ``;``, globbing, command substitution) is not part of
the language and is rejected as a syntax error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Command", "ShellSyntaxError", "parse_line"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPECIAL = set("|&;<()`")


class ShellSyntaxError(Exception):
    """A line the shell cannot parse; the message is what ash would say after ``sh: ``."""


@dataclass
class Command:
    """One parsed line: its words after expansion, and where its output goes."""

    words: list[str]
    #: (``">"`` or ``">>"``, target path) or None
    redirect: tuple[str, str] | None = None
    #: ``NAME=VALUE`` assignments that make up the whole line
    assignments: list[tuple[str, str]] | None = None


def parse_line(line: str, lookup: Callable[[str], str]) -> Command | None:
    """Parse one line; None for a blank or comment line.  ``lookup`` expands a variable name
    (``!`` and ``$`` included) to its value ("" if unset)."""
    words: list[tuple[str, bool]] = []  # (text, had an unquoted '=' prefix candidate)
    redirect: tuple[str, str] | None = None
    pending_redirect: str | None = None
    i = 0
    n = len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n or line[i] in "\n\r":
            break
        c = line[i]
        if c == "#":
            break
        if c == ">":
            if pending_redirect is not None:
                raise ShellSyntaxError("syntax error: unexpected redirection")
            op = ">>" if line.startswith(">>", i) else ">"
            i += len(op)
            pending_redirect = op
            continue
        if c in _SPECIAL:
            raise ShellSyntaxError(f"syntax error: unexpected \"{c}\"")
        word, i, assignable = _read_word(line, i, lookup)
        if pending_redirect is not None:
            if redirect is not None:
                raise ShellSyntaxError("syntax error: more than one redirection")
            redirect = (pending_redirect, word)
            pending_redirect = None
        else:
            words.append((word, assignable))
    if pending_redirect is not None:
        raise ShellSyntaxError("syntax error: unexpected newline")
    if not words and redirect is None:
        return None
    if words and all(a for _, a in words) and redirect is None:
        pairs = []
        for w, _ in words:
            name, _, value = w.partition("=")
            pairs.append((name, value))
        return Command([], None, pairs)
    return Command([w for w, _ in words], redirect)


def _read_word(line: str, i: int, lookup: Callable[[str], str]) -> tuple[str, int, bool]:
    """One word from ``line[i:]``: (text, index after it, is it NAME=... with NAME unquoted)."""
    out: list[str] = []
    n = len(line)
    start = i
    assignable = False
    while i < n:
        c = line[i]
        if c in " \t\n\r" or c == ">" or c in _SPECIAL:
            break
        if c == "=" and not assignable and i > start and _NAME.fullmatch(line[start:i]):
            assignable = True
            out.append(c)
            i += 1
        elif c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("syntax error: unterminated quoted string")
            out.append(line[i + 1:end])
            i = end + 1
        elif c == '"':
            i += 1
            while True:
                if i >= n:
                    raise ShellSyntaxError("syntax error: unterminated quoted string")
                c = line[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < n and line[i + 1] in '"\\$`':
                    out.append(line[i + 1])
                    i += 2
                elif c == "$":
                    text, i = _expand(line, i, lookup)
                    out.append(text)
                else:
                    out.append(c)
                    i += 1
        elif c == "\\":
            if i + 1 < n:
                out.append(line[i + 1])
            i += 2
        elif c == "$":
            text, i = _expand(line, i, lookup)
            out.append(text)
        else:
            out.append(c)
            i += 1
    return "".join(out), i, assignable


def _expand(line: str, i: int, lookup: Callable[[str], str]) -> tuple[str, int]:
    """``$NAME``, ``${NAME}``, ``$!``, ``$$`` at ``line[i]``; a lone ``$`` stays itself."""
    nxt = line[i + 1:i + 2]
    if nxt in ("!", "$"):
        return lookup(nxt), i + 2
    if nxt == "{":
        end = line.find("}", i + 2)
        if end < 0:
            raise ShellSyntaxError("syntax error: missing '}'")
        name = line[i + 2:end]
        if not _NAME.fullmatch(name) and name not in ("!", "$"):
            raise ShellSyntaxError(f"{line[i:end + 1]}: bad substitution")
        return lookup(name), end + 1
    m = _NAME.match(line, i + 1)
    if m is None:
        return "$", i + 1
    return lookup(m.group(0)), m.end()
