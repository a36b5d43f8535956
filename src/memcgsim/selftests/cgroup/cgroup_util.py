"""tools/testing/selftests/cgroup/cgroup_util.c, over a simulated machine's user space.

The helpers keep their C names and return conventions (0 or -1, ``atol`` of a file, -1 for a
missing key) and touch the kernel only as a test program does: through paths under the
cgroup2 mount (:class:`~memcgsim.cgroupfs.CgroupFs`), processes forked and moved by pid,
and system calls such as stat(2) (:class:`~memcgsim.userspace.Userspace`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from memcgsim.cgroupfs import CGROUP_MOUNT
from memcgsim.kernel.errno import EBUSY, ENOENT, KernelError

if TYPE_CHECKING:
    from memcgsim.kernel.task import Task
    from memcgsim.userspace import Userspace

__all__ = [
    "DEFAULT_WAIT_INTERVAL_US",
    "EXIT_FAILURE",
    "KSFT_FAIL",
    "KSFT_PASS",
    "KSFT_SKIP",
    "CgFn",
    "CgroupUtil",
    "atol",
]

KSFT_PASS = 0
KSFT_FAIL = 1
KSFT_SKIP = 4
EXIT_FAILURE = 1
#: cgroup_util.h: 100 ms between polls
DEFAULT_WAIT_INTERVAL_US = 100 * 1000
#: cg_destroy() retries rmdir on EBUSY forever; the port gives up after this many tries
CG_DESTROY_MAX_TRIES = 1000

#: fn(util, cgroup, process, arg): what a forked child runs in cg_run()
CgFn = Callable[["CgroupUtil", str, "Task", int], int]

_ATOL = re.compile(r"[ \t\n\v\f\r]*([+-]?\d*)")


def atol(s: str) -> int:
    """atol(3): skip leading whitespace, an optional sign, the digits that follow (0 if none)."""
    m = _ATOL.match(s)
    digits = m.group(1) if m else ""
    try:
        return int(digits)
    except ValueError:
        return 0


class CgroupUtil:
    """cgroup_util.c's helpers for one machine; ``out`` collects what the tests printf()."""

    def __init__(self, us: Userspace) -> None:
        self.us = us
        self.fs = us.fs
        self.out: list[str] = []

    def printf(self, text: str) -> None:
        self.out.append(text)

    # ------------------------------------------------------------------ names
    def cg_find_unified_root(self) -> str:
        """cg_find_unified_root(): where cgroup2 is mounted."""
        return CGROUP_MOUNT

    @staticmethod
    def cg_name(root: str, name: str) -> str:
        return f"{root}/{name}"

    @staticmethod
    def cg_name_indexed(root: str, name: str, index: int) -> str:
        return f"{root}/{name}{index}"

    # ------------------------------------------------------------------ files
    def cg_read(self, cgroup: str, control: str) -> str | None:
        """cg_read(): the file's text (cut at PAGE_SIZE - 1 bytes, the C buffer), or None."""
        try:
            text = self.fs.read(f"{cgroup}/{control}")
        except KernelError:
            return None
        return text[: self.us.k.page_size - 1]

    def cg_write(self, cgroup: str, control: str, buf: str) -> int:
        """cg_write(): 0, or -1 if the open or the write failed."""
        try:
            self.fs.write(f"{cgroup}/{control}", buf)
        except KernelError:
            return -1
        return 0

    def cg_read_strstr(self, cgroup: str, control: str, needle: str) -> int:
        """cg_read_strstr(): 0 if ``needle`` is in the file, -1 otherwise."""
        text = self.cg_read(cgroup, control)
        return 0 if text is not None and needle in text else -1

    def cg_read_long(self, cgroup: str, control: str) -> int:
        """cg_read_long(): atol() of the file, -1 if unreadable."""
        text = self.cg_read(cgroup, control)
        return -1 if text is None else atol(text)

    def cg_read_key_long(self, cgroup: str, control: str, key: str) -> int:
        """cg_read_key_long(): atol() of what follows the first ``key``; -1 if absent."""
        text = self.cg_read(cgroup, control)
        if text is None:
            return -1
        at = text.find(key)
        if at < 0:
            return -1
        return atol(text[at + len(key):])

    def cg_read_key_long_poll(self, cgroup: str, control: str, key: str, expected: int,
                              retries: int, wait_interval_us: int) -> int:
        """cg_read_key_long_poll(): re-read until the value is ``expected`` (or unreadable),
        sleeping ``wait_interval_us`` between tries; the last value read."""
        val = -1
        for _ in range(retries):
            val = self.cg_read_key_long(cgroup, control, key)
            if val < 0:
                return val
            if val == expected:
                break
            self.usleep(wait_interval_us)
        return val

    # ------------------------------------------------------------------ directories
    def cg_create(self, cgroup: str) -> int:
        """cg_create(): mkdir; 0 or -1."""
        try:
            self.fs.mkdir(cgroup)
        except KernelError:
            return -1
        return 0

    def cg_killall(self, cgroup: str) -> int:
        """cg_killall(): ``1`` into cgroup.kill."""
        return self.cg_write(cgroup, "cgroup.kill", "1")

    def cg_destroy(self, cgroup: str) -> int:
        """cg_destroy(): rmdir, killing the processes and retrying on EBUSY (the C retries
        forever; this port stops after CG_DESTROY_MAX_TRIES); ENOENT counts as done."""
        for _ in range(CG_DESTROY_MAX_TRIES):
            try:
                self.fs.rmdir(cgroup)
                return 0
            except KernelError as e:
                if e.errno == ENOENT:
                    return 0
                if e.errno != EBUSY:
                    return -1
            self.cg_killall(cgroup)
            self.usleep(100)
        return -1

    # ------------------------------------------------------------------ processes
    def cg_run(self, cgroup: str, fn: CgFn, arg: int) -> int:
        """cg_run(): fork; the child writes its pid into ``cgroup``/cgroup.procs and runs
        ``fn``; the parent waits (waitpid(): deferred kernel work runs meanwhile) and
        returns its exit status (EXIT_FAILURE if the move failed)."""
        us = self.us
        child = us.fork("cg_run")
        try:
            if self.cg_write_as(child, cgroup, "cgroup.procs", str(child.pid)):
                return EXIT_FAILURE
            return fn(self, cgroup, child, arg)
        finally:
            us.exit(child)
            us.waitpid(child)

    def cg_write_as(self, task: Task, cgroup: str, control: str, buf: str) -> int:
        """cg_write() done by process ``task`` rather than by the test program."""
        try:
            self.us.fs_for(task).write(f"{cgroup}/{control}", buf)
        except KernelError:
            return -1
        return 0

    def get_nprocs(self) -> int:
        """get_nprocs(3): the simulated CPUs."""
        return self.us.k.nr_cpus

    def sysconf_pagesize(self) -> int:
        """sysconf(_SC_PAGESIZE)."""
        return self.us.k.page_size

    def usleep(self, usecs: int) -> None:
        self.us.sleep(usecs / 1_000_000)

    def sleep(self, seconds: int) -> None:
        self.us.sleep(seconds)
