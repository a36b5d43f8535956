"""The shell: commands that read like a session on a real machine, run against the model.

Every command has a direct equivalent on a real machine (DESIGN.md §6), so that one script can
run on the model and, later, on a kernel under qemu, and the outputs compare line by line:

====================================  ====================================================
model                                 real machine (busybox ash, cwd /sys/fs/cgroup)
====================================  ====================================================
``mkdir [-p] PATH...``                the same
``rmdir PATH...``                     the same
``cat PATH...``                       the same
``echo [-n] ARGS [> PATH]``           the same (the ash builtin)
``cd [PATH]``, ``pwd``, ``ls [PATH]``  the same (``cd`` alone goes to /sys/fs/cgroup)
``NAME=VALUE``, ``$NAME``, ``$!``     the same
``spawn NAME [PATH]``                 ``sleep 1d & NAME=$!; echo $NAME > PATH/cgroup.procs``
``kill PID|NAME...``                  ``kill -9 PID``
``alloc TASK CACHE COUNT [as LABEL]`` a test module allocating COUNT objects for TASK
``free LABEL``                        the same module freeing them
``stat-missing TASK COUNT``           TASK running the selftests' alloc_dcache(COUNT)
``sleep SECONDS``                     the same
``drop_caches N``                     ``echo N > /proc/sys/vm/drop_caches``
``settle``                            waiting until the kernel is idle
``# ...``                             a comment
====================================  ====================================================

Paths are written as on the machine: the shell starts in ``/sys/fs/cgroup`` (the mount
point), so ``mkdir a`` makes the cgroup ``/a``; absolute paths work too.  A failing command
prints what busybox prints, naming the path as the command was given it:
``rmdir: 'a': Device or resource busy``, ``mkdir: can't create directory 'a': File exists``,
``cat: can't open 'x': No such file or directory``, ``sh: write error: Invalid argument``,
``sh: can't create x/y: nonexistent directory``, ``sh: foo: not found``.  The shell's own
messages begin with ``sh: `` as ash's do for a script read from standard input.

TASK is a process name given to ``spawn`` or a pid.  A spawned process's pid is in ``$!``
and in a variable named after it (``$worker``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from memcgsim.cgroupfs import CGROUP_MOUNT
from memcgsim.kernel.errno import EEXIST, ENOENT, ENOTDIR, KernelError
from memcgsim.kernel.violations import KernelViolation
from memcgsim.shell.parse import Command, ShellSyntaxError, parse_line
from memcgsim.userspace import DROP_CACHES, Unsupported, Userspace

if TYPE_CHECKING:
    from memcgsim.kernel.task import Task

__all__ = ["COMMANDS", "EXIT_INTERNAL", "EXIT_PANIC", "Shell", "ShellExit"]

#: exit status after a kernel panic (a checker fired), as a crashed machine gives no status
EXIT_PANIC = 3
#: exit status after an error in the model itself (EX_SOFTWARE)
EXIT_INTERNAL = 70


class ShellExit(Exception):
    """``exit [N]``, or the end forced by a panic."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(status)


class _Failed(Exception):
    """A command failed; its message is already printed."""


@dataclass(frozen=True)
class _Cmd:
    usage: str
    help: str


COMMANDS: dict[str, _Cmd] = {
    "mkdir": _Cmd("mkdir [-p] PATH...", "create cgroups"),
    "rmdir": _Cmd("rmdir PATH...", "remove cgroups (they may linger as dying)"),
    "cat": _Cmd("cat PATH...", "print files"),
    "echo": _Cmd("echo [-n] [ARG...] [> PATH]", "print, or write to a file"),
    "cd": _Cmd("cd [PATH]", "change directory"),
    "pwd": _Cmd("pwd", "print the working directory"),
    "ls": _Cmd("ls [PATH]", "list a directory"),
    "spawn": _Cmd("spawn NAME [PATH]", "start a process (in the cgroup PATH)"),
    "kill": _Cmd("kill [-9] TASK...", "end processes"),
    "alloc": _Cmd("alloc TASK CACHE COUNT [as LABEL]", "TASK allocates COUNT kernel objects"),
    "free": _Cmd("free LABEL", "free the objects allocated as LABEL"),
    "stat-missing": _Cmd("stat-missing TASK COUNT", "TASK stats COUNT missing names"),
    "sleep": _Cmd("sleep SECONDS", "let simulated time pass"),
    "drop_caches": _Cmd("drop_caches N", "echo N > /proc/sys/vm/drop_caches"),
    "settle": _Cmd("settle", "run until nothing is pending"),
    "help": _Cmd("help", "list the commands"),
    "exit": _Cmd("exit [N]", "leave the shell"),
}


class Shell:
    """Runs lines of the language against a :class:`~memcgsim.userspace.Userspace`.

    ``status`` is the exit status a script would have so far: 0, or 1 once a command failed.
    """

    def __init__(self, us: Userspace, out: TextIO, err: TextIO, *, strict: bool = False) -> None:
        self.us = us
        self.out = out
        self.err = err
        self.strict = strict
        self.status = 0
        self.vars: dict[str, str] = {}
        self.last_pid = ""
        self._handlers: dict[str, Callable[[list[str], Command], None]] = {
            "mkdir": self._mkdir, "rmdir": self._rmdir, "cat": self._cat, "echo": self._echo,
            "cd": self._cd, "pwd": self._pwd, "ls": self._ls, "spawn": self._spawn,
            "kill": self._kill, "alloc": self._alloc, "free": self._free,
            "stat-missing": self._stat_missing, "sleep": self._sleep,
            "drop_caches": self._drop_caches, "settle": self._settle, "help": self._help,
            "exit": self._exit,
        }

    # ------------------------------------------------------------------ running
    def run_lines(self, lines: Iterable[str]) -> int:
        """Run a script; the exit status (1 if any command failed, EXIT_PANIC on a panic)."""
        try:
            for line in lines:
                if not self.run_line(line) and self.strict:
                    break
        except ShellExit as e:
            return e.status
        return self.status

    def run_line(self, line: str) -> bool:
        """Run one line; False if it failed.  ShellExit for ``exit`` or a kernel panic."""
        try:
            cmd = parse_line(line, self._lookup)
        except ShellSyntaxError as e:
            return self._fail(f"sh: {e}")
        if cmd is None:
            return True
        if cmd.assignments is not None:
            for name, value in cmd.assignments:
                self.vars[name] = value
            return True
        if not cmd.words:
            # A bare redirection creates (truncates) the file: nothing a cgroup file allows.
            assert cmd.redirect is not None
            return self._redirect_write(cmd.redirect[1], None)
        name, args = cmd.words[0], cmd.words[1:]
        handler = self._handlers.get(name)
        if handler is None:
            return self._fail(f"sh: {name}: not found")
        if cmd.redirect is not None and name != "echo":
            return self._fail(f"sh: {name}: output redirection is only supported for echo")
        try:
            handler(args, cmd)
        except _Failed:
            self.status = 1
            return False
        except KernelViolation as e:
            self.err.write(f"memcgsim: kernel panic: {e.violation}\n")
            self.err.flush()
            raise ShellExit(EXIT_PANIC) from None
        except ShellExit:
            raise
        except Exception as e:
            # A bug in the model: one line naming it and where, never a traceback.
            tb = e.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            where = (f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
                     if tb is not None else "")
            self.err.write(f"memcgsim: internal error: {type(e).__name__}: {e}{where}\n")
            self.err.flush()
            raise ShellExit(EXIT_INTERNAL) from None
        return True

    def _fail(self, msg: str) -> bool:
        self.err.write(msg + "\n")
        self.err.flush()
        self.status = 1
        return False

    def _die(self, msg: str) -> _Failed:
        self.err.write(msg + "\n")
        self.err.flush()
        return _Failed()

    def _lookup(self, name: str) -> str:
        if name == "!":
            return self.last_pid
        if name == "$":
            return str(self.us.fs.task.pid)
        return self.vars.get(name, "")

    def _usage(self, name: str) -> _Failed:
        return self._die(f"{name}: usage: {COMMANDS[name].usage}")

    # ------------------------------------------------------------------ file commands
    def _mkdir(self, args: list[str], cmd: Command) -> None:
        parents = False
        paths = []
        for a in args:
            if a == "-p":
                parents = True
            else:
                paths.append(a)
        if not paths:
            raise self._usage("mkdir")
        failed = False
        for p in paths:
            try:
                if parents:
                    self._mkdir_p(p)
                else:
                    self.us.fs.mkdir(p)
            except KernelError as e:
                self.err.write(f"mkdir: can't create directory '{p}': {e.strerror}\n")
                failed = True
        if failed:
            self.err.flush()
            raise _Failed()

    def _mkdir_p(self, path: str) -> None:
        fs = self.us.fs
        prefix = "/" if path.startswith("/") else ""
        parts = [c for c in path.split("/") if c]
        for i in range(len(parts)):
            sub = prefix + "/".join(parts[:i + 1])
            try:
                fs.mkdir(sub)
            except KernelError as e:
                if e.errno != EEXIST or not fs.isdir(sub):
                    raise

    def _rmdir(self, args: list[str], cmd: Command) -> None:
        if not args:
            raise self._usage("rmdir")
        failed = False
        for p in args:
            try:
                self.us.fs.rmdir(p)
            except KernelError as e:
                self.err.write(f"rmdir: '{p}': {e.strerror}\n")
                failed = True
        if failed:
            self.err.flush()
            raise _Failed()

    def _cat(self, args: list[str], cmd: Command) -> None:
        if not args:
            raise self._usage("cat")
        fs = self.us.fs
        failed = False
        for p in args:
            if self._abspath(p) == DROP_CACHES:
                self.out.write(f"{self.us.sysctl_drop_caches}\n")
                continue
            try:
                d = fs.open(p)
            except KernelError as e:
                self.err.write(f"cat: can't open '{p}': {e.strerror}\n")
                failed = True
                continue
            try:
                text = fs.read_file(d)
            except KernelError as e:
                self.err.write(f"cat: read error: {e.strerror}\n")
                failed = True
                continue
            self.out.write(text)
        self.out.flush()
        if failed:
            self.err.flush()
            raise _Failed()

    def _echo(self, args: list[str], cmd: Command) -> None:
        newline = True
        while args and args[0] in ("-n", "-e", "-E", "-ne", "-en"):
            if "n" in args[0]:
                newline = False
            args = args[1:]
        text = " ".join(args) + ("\n" if newline else "")
        if cmd.redirect is None:
            self.out.write(text)
            self.out.flush()
            return
        if not self._redirect_write(cmd.redirect[1], text):
            raise _Failed()

    def _redirect_write(self, path: str, text: str | None) -> bool:
        """open(path, O_WRONLY|O_CREAT|O_TRUNC), then one write(2), with ash's messages."""
        fs = self.us.fs
        if self._abspath(path) == DROP_CACHES:
            if not text:
                return True
            try:
                self.us.drop_caches(text)
            except KernelError as e:
                return self._fail(f"sh: write error: {e.strerror}")
            except Unsupported as e:
                return self._fail(f"sh: write error: {e}")
            return True
        try:
            d = fs.open(path, write=True)
        except KernelError as e:
            msg = "nonexistent directory" if e.errno in (ENOENT, ENOTDIR) else e.strerror
            return self._fail(f"sh: can't create {path}: {msg}")
        if not text:
            return True  # echo -n "" opens the file and writes nothing
        try:
            fs.write_file(d, text)
        except KernelError as e:
            return self._fail(f"sh: write error: {e.strerror}")
        return True

    def _abspath(self, path: str) -> str:
        return posixpath.normpath(posixpath.join(self.us.fs.cwd, path))

    def _cd(self, args: list[str], cmd: Command) -> None:
        target = args[0] if args else CGROUP_MOUNT
        try:
            self.us.fs.chdir(target)
        except KernelError as e:
            raise self._die(f"sh: cd: can't cd to {target}: {e.strerror}") from None

    def _pwd(self, args: list[str], cmd: Command) -> None:
        self.out.write(self.us.fs.cwd + "\n")
        self.out.flush()

    def _ls(self, args: list[str], cmd: Command) -> None:
        paths = args or ["."]
        failed = False
        for p in paths:
            try:
                names = self.us.fs.listdir(p) if self.us.fs.isdir(p) else None
                if names is None:
                    self.us.fs.lookup(p)
                    names = [p]
            except KernelError as e:
                self.err.write(f"ls: {p}: {e.strerror}\n")
                failed = True
                continue
            if len(paths) > 1:
                self.out.write(f"{p}:\n")
            self.out.write("".join(n + "\n" for n in names))
        self.out.flush()
        if failed:
            self.err.flush()
            raise _Failed()

    # ------------------------------------------------------------------ processes
    def _task(self, cmdname: str, what: str) -> Task:
        t = self.us.find(what)
        if t is None:
            raise self._die(f"{cmdname}: no such process: {what}")
        return t

    def _spawn(self, args: list[str], cmd: Command) -> None:
        if len(args) not in (1, 2):
            raise self._usage("spawn")
        name = args[0]
        try:
            t = self.us.spawn(name)
        except ValueError as e:
            raise self._die(f"spawn: {e}") from None
        if len(args) == 2:
            # sleep 1d & echo $! > PATH/cgroup.procs: on failure the process goes again.
            path = args[1]
            procs = path + "cgroup.procs" if path.endswith("/") else path + "/cgroup.procs"
            if not self._redirect_write(procs, f"{t.pid}\n"):
                self.us.exit(t)
                del self.us.processes[name]
                raise _Failed()
        self.last_pid = str(t.pid)
        if name.isidentifier() and name.isascii():
            self.vars[name] = str(t.pid)

    def _kill(self, args: list[str], cmd: Command) -> None:
        targets = [a for a in args if a not in ("-9", "-KILL", "-s", "KILL")]
        if not targets:
            raise self._usage("kill")
        failed = False
        for a in targets:
            t = self.us.find(a)
            if t is None:
                if a.isdigit():
                    self.err.write(f"kill: can't kill pid {a}: No such process\n")
                else:
                    self.err.write(f"kill: bad pid '{a}'\n")
                failed = True
                continue
            if t is self.us.fs.task:
                self.err.write(f"kill: can't kill pid {a}: the shell does not kill itself\n")
                failed = True
                continue
            self.us.exit(t)
        if failed:
            self.err.flush()
            raise _Failed()

    # ------------------------------------------------------------------ kernel memory
    def _count(self, cmdname: str, text: str) -> int:
        if not text.isdigit():
            raise self._die(f"{cmdname}: invalid number '{text}'")
        return int(text)

    def _alloc(self, args: list[str], cmd: Command) -> None:
        if len(args) == 5 and args[3] == "as":
            label: str | None = args[4]
        elif len(args) == 3:
            label = None
        else:
            raise self._usage("alloc")
        t = self._task("alloc", args[0])
        cache = args[1]
        if cache not in self.us.kmem.caches():
            raise self._die(f"alloc: unknown cache '{cache}' (known: "
                            f"{', '.join(self.us.kmem.caches())})")
        count = self._count("alloc", args[2])
        try:
            self.us.alloc(t, cache, count, label)
        except KernelError as e:
            raise self._die(f"alloc: {e.strerror}") from None

    def _free(self, args: list[str], cmd: Command) -> None:
        if len(args) != 1:
            raise self._usage("free")
        if args[0] not in self.us.objects or args[0] == "":
            raise self._die(f"free: no objects allocated as '{args[0]}'")
        self.us.free(args[0])

    def _stat_missing(self, args: list[str], cmd: Command) -> None:
        if len(args) != 2:
            raise self._usage("stat-missing")
        t = self._task("stat-missing", args[0])
        count = self._count("stat-missing", args[1])
        try:
            self.us.stat_missing(t, count)
        except Unsupported as e:
            raise self._die(f"stat-missing: {e}") from None
        except KernelError as e:
            raise self._die(f"stat-missing: {e.strerror}") from None

    def _drop_caches(self, args: list[str], cmd: Command) -> None:
        if len(args) != 1:
            raise self._usage("drop_caches")
        if not self._redirect_write(DROP_CACHES, args[0] + "\n"):
            raise _Failed()

    # ------------------------------------------------------------------ time
    def _sleep(self, args: list[str], cmd: Command) -> None:
        if len(args) != 1:
            raise self._usage("sleep")
        try:
            seconds = float(args[0])
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds < 1e9 or args[0].lower() in ("nan", "inf", "infinity"):
            raise self._die(f"sleep: invalid number '{args[0]}'")
        self.us.sleep(seconds)

    def _settle(self, args: list[str], cmd: Command) -> None:
        if args:
            raise self._usage("settle")
        self.us.settle()

    # ------------------------------------------------------------------ the shell itself
    def _help(self, args: list[str], cmd: Command) -> None:
        width = max(len(c.usage) for c in COMMANDS.values())
        for c in COMMANDS.values():
            self.out.write(f"{c.usage:<{width}}  {c.help}\n")
        self.out.flush()

    def _exit(self, args: list[str], cmd: Command) -> None:
        if len(args) > 1 or (args and not args[0].isdigit()):
            raise self._usage("exit")
        raise ShellExit(int(args[0]) % 256 if args else self.status)
