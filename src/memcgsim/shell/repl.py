"""The interactive loop: a prompt, line editing and history through readline where the Python
build has it, and completion of commands, paths, process names, caches and labels."""

from __future__ import annotations

import posixpath
import sys
from typing import TYPE_CHECKING

from memcgsim.shell.interp import COMMANDS, ShellExit

if TYPE_CHECKING:
    from memcgsim.shell.interp import Shell

__all__ = ["Completer", "interact"]

_TASK_ARG = {"alloc": 1, "stat-missing": 1, "kill": None}


class Completer:
    """readline completer: the first word is a command; the words after it are paths, except
    where a command takes a process (``alloc``, ``stat-missing``, ``kill``), a cache (the
    second argument of ``alloc``) or a label (``free``)."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self._matches: list[str] = []

    def candidates(self, line: str, text: str) -> list[str]:
        """Completions of the word ``text`` that ends ``line``."""
        words = line.split()
        if line.endswith((" ", "\t")) or not words:
            words.append("")
        index = len(words) - 1
        us = self.shell.us
        if index == 0:
            return sorted(c + " " for c in COMMANDS if c.startswith(text))
        cmd = words[0]
        if cmd in _TASK_ARG and (_TASK_ARG[cmd] is None or index == _TASK_ARG[cmd]):
            names = [n for n, t in us.processes.items() if not t.exited]
            return sorted(n + " " for n in names if n.startswith(text))
        if cmd == "alloc" and index == 2:
            return sorted(c + " " for c in us.kmem.caches() if c.startswith(text))
        if cmd == "free" and index == 1:
            return sorted(label + " " for label in us.objects if label and label.startswith(text))
        return self._paths(text)

    def _paths(self, text: str) -> list[str]:
        fs = self.shell.us.fs
        head, _, tail = text.rpartition("/")
        directory = head + "/" if head or text.startswith("/") else ""
        try:
            names = fs.listdir(directory or ".")
        except Exception:
            return []
        out = []
        for n in names:
            if n.startswith(tail):
                full = directory + n
                out.append(full + "/" if fs.isdir(posixpath.normpath(full) if full else ".")
                           else full + " ")
        return sorted(out)

    def complete(self, text: str, state: int) -> str | None:
        """The readline protocol: the ``state``-th completion of ``text``."""
        if state == 0:
            import readline

            self._matches = self.candidates(readline.get_line_buffer()[:readline.get_endidx()],
                                            text)
        return self._matches[state] if state < len(self._matches) else None


def interact(shell: Shell) -> int:
    """Read, run, repeat until end of input or ``exit``; the exit status."""
    try:
        import readline
    except ImportError:  # pragma: no cover - Python built without readline
        readline = None  # type: ignore[assignment]
    if readline is not None:
        readline.set_completer(Completer(shell).complete)
        readline.set_completer_delims(" \t\n>")
        readline.parse_and_bind("tab: complete")
    print("memcgsim shell: the model's cgroup2 at /sys/fs/cgroup; 'help' lists the commands.",
          file=sys.stderr)
    while True:
        try:
            line = input(f"{shell.us.fs.cwd} # ")
        except EOFError:
            print(file=sys.stderr)
            return shell.status
        except KeyboardInterrupt:
            print(file=sys.stderr)
            continue
        try:
            shell.run_line(line)
        except ShellExit as e:
            return e.status
