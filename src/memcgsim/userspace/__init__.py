"""A simulated machine seen from user space: processes with pids, the cgroup file system, and
the few system calls that make the kernel allocate memory.

This is the layer the shell and the ported selftests stand on; it gives them nothing a
program on a real machine would not have: ``mkdir``/``rmdir``/``read``/``write`` on paths
(:attr:`Userspace.fs`), processes that are forked from a shell in the root cgroup and moved by
writing their pid to ``cgroup.procs``, ``stat(2)`` of missing names, allocations of kernel
objects on a process's behalf, ``/proc/sys/vm/drop_caches``, and the passing of time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from memcgsim.cgroupfs import CgroupFs
from memcgsim.kernel.errno import EINVAL, ENOMEM, KernelError
from memcgsim.kernel.syscall import do_syscall, do_syscalls_parallel
from memcgsim.kernel.task import TaskState
from memcgsim.lib.kstrtox import kstrtoint
from memcgsim.userspace.kmem import KmemAdapter, SlabCaches, Unsupported

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.task import Task

__all__ = ["DROP_CACHES", "KmemAdapter", "Unsupported", "Userspace", "default_kmem_adapter"]

T = TypeVar("T")

#: the sysctl file ``drop_caches N`` writes
DROP_CACHES = "/proc/sys/vm/drop_caches"


def default_kmem_adapter(k: Kernel) -> KmemAdapter:
    """The slab model's caches (:class:`~memcgsim.userspace.kmem.SlabCaches`)."""
    return SlabCaches()


class Userspace:
    """User space on one :class:`~memcgsim.kernel.kernel.Kernel`.

    ``sh`` is the shell process (in the root cgroup, on CPU 0) that does the file operations
    and forks the other processes; forked processes go round the CPUs in turn.
    """

    def __init__(self, k: Kernel, kmem: KmemAdapter | None = None) -> None:
        self.k = k
        self.kmem = kmem if kmem is not None else default_kmem_adapter(k)
        self.fs = CgroupFs(k, task=k.new_process("sh", "/", cpu=0))
        #: spawned processes by name (live ones)
        self.processes: dict[str, Task] = {}
        #: objects allocated with ``as LABEL`` (adapter handles), by label ("" for none)
        self.objects: dict[str, list[Any]] = {}
        self._nr_forked = 0
        #: the last value written to /proc/sys/vm/drop_caches (sysctl_drop_caches)
        self.sysctl_drop_caches = 0

    @property
    def sh(self) -> Task:
        """The shell process (a new one if the last was killed)."""
        return self.fs.task

    # ------------------------------------------------------------------ processes
    def fork(self, name: str, *, persistent: bool = True, parent: Task | None = None) -> Task:
        """fork() from the shell (or ``parent``): a new process in its parent's cgroup, on
        the next CPU.

        A ``persistent`` process stays after each job (a daemon waiting for work); otherwise
        it exits when its first job returns, as a forked child running one function does.
        """
        cpu = self._nr_forked % self.k.nr_cpus
        self._nr_forked += 1

        def do_fork(k: Kernel) -> Task:
            return k.new_task(name, cpu=cpu, persistent=persistent)

        return do_syscall(self.k, parent if parent is not None else self.fs.task, do_fork)

    def spawn(self, name: str, path: str | None = None) -> Task:
        """Start a named process, in the cgroup ``path`` (by writing its pid to
        ``cgroup.procs``) or in the shell's.  KernelError if the move fails (the process is
        gone again); ValueError if a live process already has that name."""
        old = self.processes.get(name)
        if old is not None and not old.exited:
            raise ValueError(f"a process named {name} exists (pid {old.pid})")
        t = self.fork(name)
        if path is not None:
            try:
                self.fs.write(_join(path, "cgroup.procs"), f"{t.pid}\n")
            except KernelError:
                self.exit(t)
                raise
        self.processes[name] = t
        return t

    def find(self, name_or_pid: str) -> Task | None:
        """A live process by name or pid."""
        t = self.processes.get(name_or_pid)
        if t is None:
            err, pid = kstrtoint(name_or_pid, 10)
            if err == 0:
                t = next((x for x in self.k.tasks if x.pid == pid and not x.daemon), None)
        if t is None or t.exited or t.state is TaskState.DONE:
            return None
        return t

    def exit(self, t: Task) -> None:
        """The process exits (kill -9): do_exit() drops its css_set."""
        if t.state is TaskState.IDLE:
            t.persistent = False
            do_syscall(self.k, t, _do_exit)

    def waitpid(self, t: Task) -> None:
        """waitpid(2) by the shell for ``t``, which has exited: the caller sleeps, and the
        kernel's deferred work runs meanwhile.  The model's grace periods are not timed, so
        all of it runs (as :meth:`settle`)."""
        if not t.exited:
            raise ValueError(f"waitpid: {t.name} has not exited")
        self.k.settle()

    def run(self, t: Task, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(k, *args)`` as ``t``'s next job (system calls it makes charge its memcg)."""
        return do_syscall(self.k, t, fn, *args)

    def run_parallel(self, jobs: list[tuple[Task, Callable[[Kernel], Any]]]) -> list[Any]:
        """Start each ``fn(k)`` in its task at once and run until all are done (threads of a
        process on several CPUs); results in order, the first exception re-raised."""
        return do_syscalls_parallel(self.k, jobs)

    def fs_for(self, t: Task) -> CgroupFs:
        """The cgroup file system as process ``t`` uses it (its system calls, its charges)."""
        return CgroupFs(self.k, task=t)

    # ------------------------------------------------------------------ allocations
    def alloc(self, t: Task, cache: str, count: int, label: str | None = None) -> int:
        """``count`` objects of ``cache`` allocated by ``t`` and kept (under ``label``).

        Returns how many were allocated; KernelError ENOMEM if an allocation failed (the
        ones before it are kept); ValueError for an unknown cache or a negative count.
        """
        if cache not in self.kmem.caches():
            raise ValueError(f"unknown cache {cache!r} (known: {', '.join(self.kmem.caches())})")
        if count < 0:
            raise ValueError(f"count must not be negative, not {count}")
        kmem = self.kmem
        got: list[Any] = self.run(t, lambda k: kmem.alloc(k, cache, count))
        key = label if label is not None else ""
        self.objects.setdefault(key, []).extend(got)
        if len(got) < count:
            raise KernelError(ENOMEM, f"alloc {cache}")
        return len(got)

    def free(self, label: str) -> int:
        """Free every object kept under ``label`` (by the shell); how many.  KeyError if
        there is no such label."""
        objs = self.objects.pop(label)
        kmem = self.kmem
        self.run(self.fs.task, lambda k: kmem.free(k, objs))
        return len(objs)

    def stat_missing(self, t: Task, count: int, *, tgid: int | None = None) -> None:
        """``count`` stat(2) calls by ``t`` on names that do not exist, as the selftests'
        alloc_dcache() makes them (:meth:`alloc_dcache_job`).  KernelError ENOMEM if a
        lookup failed that way; Unsupported if the model has no dentry cache."""
        ret = self.run(t, self.alloc_dcache_job(count, t.pid if tgid is None else tgid))
        if ret < 0:
            raise KernelError(ret, "stat")

    def alloc_dcache_job(self, count: int, tgid: int) -> Callable[[Kernel], int]:
        """The selftests' alloc_dcache() as a job for a task: stat(2) of
        ``/something-non-existent-with-a-long-name-%64lu-%d`` for i from 0, with the process
        id ``tgid`` (getpid(): threads of one process share it, so they look up the same
        names and a second call finds them cached), each leaving a negative dentry.  The job
        returns 0, or the first errno other than ENOENT."""
        kmem = self.kmem
        if not kmem.has_dcache():
            raise Unsupported("stat-missing needs the dentry cache, which this model does not "
                              "have yet")

        def alloc_dcache(k: Kernel) -> int:
            for i in range(count):
                ret = kmem.stat_missing(k, f"/something-non-existent-with-a-long-name-{i:64d}-{tgid}")
                if ret < 0:
                    return ret
            return 0

        return alloc_dcache

    def drop_caches(self, value: str) -> None:
        """A write to /proc/sys/vm/drop_caches (drop_caches_sysctl_handler()): 1 to 4 (else
        EINVAL); bit 2 shrinks the slab caches.  The model has no page cache for bit 1."""
        err, level = kstrtoint(value.strip(), 10)
        if err or not 1 <= level <= 4:
            raise KernelError(EINVAL, DROP_CACHES)
        self.sysctl_drop_caches = level
        if level & 2:
            kmem = self.kmem
            if not kmem.has_shrinkers():
                raise Unsupported("drop_caches needs slab shrinkers, which this model does not "
                                  "have yet")
            self.run(self.fs.task, lambda k: kmem.drop_slab(k))

    # ------------------------------------------------------------------ time
    def sleep(self, seconds: float) -> None:
        """Simulated time passes; grace periods, callbacks and work run as they come due."""
        self.k.advance_clock(int(seconds * 1_000_000_000))

    def settle(self) -> None:
        """Run until nothing is pending."""
        self.k.settle()


def _do_exit(k: Kernel) -> None:
    """The exiting process's last job: nothing; the runtime runs do_exit() after it."""


def _join(path: str, name: str) -> str:
    return path + name if path.endswith("/") else path + "/" + name
