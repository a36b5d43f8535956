"""The interface files of cgroup v2 and their handlers (struct cftype), under the kernel's names.

Two tables, as in the kernel: ``cgroup_base_files`` (kernel/cgroup/cgroup.c) and
``memory_files`` (mm/memcontrol.c).  Each entry names the file (without its ``cgroup.`` or
``memory.`` prefix), its ``seq_show`` and ``write`` handlers and its flags
(``CFTYPE_NOT_ON_ROOT``).  Handlers run in the task doing the read(2) or write(2); a show
returns the file's text, a write returns the number of bytes consumed or a negative errno.

The files and their formats are Linux 6.1's (the kernel that
``reference/linux-6.1-cgroupfs.md`` was observed on); the state under them is the model's.
Files the model leaves out, because it lacks what they report or control: ``cgroup.freeze``
(no freezer), ``cpu.stat`` (no CPU time), the ``*.pressure`` files (no PSI),
``memory.numa_stat``, and the ``memory.swap.*`` files (no swap).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from memcgsim.cgroup.cgroup import (
    INT_MAX,
    Cgroup,
    CgroupSubsysState,
    cgroup_attach_task,
    cgroup_is_dead,
    cgroup_is_populated,
    cgroup_parent,
    cgroup_subtree_control_write,
    walk_cgroups,
)
from memcgsim.kernel.errno import EAGAIN, EINVAL, ENOENT, EOPNOTSUPP, ERANGE, ESRCH
from memcgsim.kernel.heap import GFP_KERNEL
from memcgsim.kernel.locking import mutex_lock, mutex_unlock, spin_lock_irq, spin_unlock_irq
from memcgsim.kernel.task import AccessKind, TaskState
from memcgsim.lib.kstrtox import kstrtoint, strstrip
from memcgsim.mm.memcg_stat import memory_stat_format
from memcgsim.mm.memcontrol import (
    MemcgEvent,
    MemCgroup,
    drain_all_stock,
    memcg_memory_event,
    memory_current_bytes,
)
from memcgsim.mm.page_counter import (
    PAGE_COUNTER_MAX,
    page_counter_memparse,
    page_counter_read,
    page_counter_set_low,
    page_counter_set_min,
)

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.task import Task

__all__ = [
    "CFTYPE_NOT_ON_ROOT",
    "MAX_RECLAIM_RETRIES",
    "Cftype",
    "KernfsOpenFile",
    "cgroup_base_files",
    "cgroup_files",
    "memory_files",
    "try_to_free_mem_cgroup_pages",
]

#: the file exists on every cgroup but the root
CFTYPE_NOT_ON_ROOT = 1 << 1

_READ = AccessKind.READ

#: MAX_RECLAIM_RETRIES of 6.1's handlers (5.3 called it MEM_CGROUP_RECLAIM_RETRIES, and used 5)
MAX_RECLAIM_RETRIES = 16


@dataclass
class KernfsOpenFile:
    """struct kernfs_open_file: what a handler knows about the file being read or written."""

    #: the cgroup whose directory holds the file (of->kn->parent->priv)
    cgrp: Cgroup
    #: of_css(of): the controller's css of that cgroup, None for cgroup core files
    css: CgroupSubsysState | None
    cft: Cftype
    #: processes sent SIGKILL by the write (cgroup.kill); they exit when next scheduled
    killed: list[Task]


ShowFn = Callable[["Kernel", KernfsOpenFile], str]
WriteFn = Callable[["Kernel", KernfsOpenFile, str], int]


@dataclass(frozen=True)
class Cftype:
    """struct cftype: one interface file."""

    #: the name without the prefix (``procs``, ``max``)
    name: str
    seq_show: ShowFn | None = None
    write: WriteFn | None = None
    flags: int = 0
    #: the controller owning the file (``memory``), None for the cgroup core
    ss: str | None = None

    @property
    def file_name(self) -> str:
        """``cgroup.procs``, ``memory.max``: the name in the directory."""
        return f"{self.ss or 'cgroup'}.{self.name}"


# ====================================================================== cgroup core files
def _tasks_of(k: Kernel, cgrp: Cgroup) -> Iterator[Task]:
    """css_task_iter over the cgroup's own css_sets (not its descendants')."""
    for cset in list(cgrp.cset_links):
        for t in list(cset.tasks):
            if not t.exited:
                yield t


def cgroup_procs_show(k: Kernel, of: KernfsOpenFile) -> str:
    """cgroup_procs_show(): the pid of each process in the cgroup, one a line, in css_set
    order (unsorted, as cgroup v2 prints them).  Every model task is single-threaded, so it
    is its own thread-group leader."""
    spin_lock_irq(k, k.cgroup.css_set_lock)
    k.access(of.cgrp, "cset_links", _READ)
    pids = [t.pid for t in _tasks_of(k, of.cgrp)]
    spin_unlock_irq(k, k.cgroup.css_set_lock)
    return "".join(f"{pid}\n" for pid in pids)


def _find_task_by_vpid(k: Kernel, pid: int) -> Task | None:
    """find_task_by_vpid(): a live task with this pid; pid 0 is the caller itself."""
    if pid == 0:
        return k.current
    for t in k.tasks:
        if t.pid == pid and not t.exited and t.state is not TaskState.DONE:
            return t
    return None


def cgroup_procs_write_start(k: Kernel, buf: str) -> Task | int:
    """cgroup_procs_write_start(): the task named by ``buf``, or -EINVAL / -ESRCH.

    Kernel threads cannot be moved (-EINVAL): the kernel refuses those with
    PF_NO_SETAFFINITY, and the model treats all its kthreads as such.
    """
    err, pid = kstrtoint(strstrip(buf), 0)
    if err or pid < 0:
        return -EINVAL
    task = _find_task_by_vpid(k, pid)
    if task is None:
        return -ESRCH
    if task.daemon or task.cgroups is None:
        return -EINVAL
    return task


def cgroup_procs_write(k: Kernel, of: KernfsOpenFile, buf: str) -> int:
    """cgroup_procs_write() / __cgroup_procs_write(): move a process into the cgroup."""
    task = cgroup_procs_write_start(k, buf)
    if isinstance(task, int):
        return task
    ret = cgroup_attach_task(k, of.cgrp, task)
    return ret if ret < 0 else len(buf)


def cgroup_threads_write(k: Kernel, of: KernfsOpenFile, buf: str) -> int:
    """cgroup_threads_write(): move one thread.

    Threads may only move within their domain (cgroup_attach_permissions(): -EOPNOTSUPP
    across domains); the model has no threaded cgroups, so a thread may only "move" to the
    cgroup it is in.
    """
    task = cgroup_procs_write_start(k, buf)
    if isinstance(task, int):
        return task
    cset = task.cgroups
    if cset is None or cset.dfl_cgrp is not of.cgrp:
        return -EOPNOTSUPP
    return len(buf)


def _print_ss_mask(names: set[str], k: Kernel) -> str:
    """cgroup_print_ss_mask(): controller names in ssid order, newline only if any."""
    out = [ss.name for ss in k.cgroup.subsystems if ss.name in names]
    return " ".join(out) + "\n" if out else ""


def cgroup_controllers_show(k: Kernel, of: KernfsOpenFile) -> str:
    """cgroup_controllers_show(): the controllers the parent makes available
    (cgroup_control(): the parent's subtree_control; every controller on the root)."""
    parent = cgroup_parent(of.cgrp)
    if parent is None:
        return _print_ss_mask({ss.name for ss in k.cgroup.subsystems}, k)
    return _print_ss_mask(set(k.load(parent, "subtree_control")), k)


def cgroup_subtree_control_show(k: Kernel, of: KernfsOpenFile) -> str:
    """cgroup_subtree_control_show()."""
    return _print_ss_mask(set(k.load(of.cgrp, "subtree_control")), k)


def cgroup_subtree_control_file_write(k: Kernel, of: KernfsOpenFile, buf: str) -> int:
    """cgroup_subtree_control_write(): ``+memory``, ``-memory`` tokens separated by spaces."""
    ret = cgroup_subtree_control_write(k, of.cgrp, strstrip(buf))
    return ret if ret < 0 else len(buf)


def cgroup_events_show(k: Kernel, of: KernfsOpenFile) -> str:
    """cgroup_events_show(): ``populated`` (tasks here or below) and ``frozen`` (always 0:
    the model has no freezer)."""
    k.access(of.cgrp, "nr_populated_csets", _READ)
    populated = int(cgroup_is_populated(of.cgrp))
    return f"populated {populated}\nfrozen 0\n"


def cgroup_stat_show(k: Kernel, of: KernfsOpenFile) -> str:
    """cgroup_stat_show() (6.1: two lines; the nr_subsys_* lines came in 6.11)."""
    nr_descendants = k.load(of.cgrp, "nr_descendants")
    nr_dying = k.load(of.cgrp, "nr_dying_descendants")
    return f"nr_descendants {nr_descendants}\nnr_dying_descendants {nr_dying}\n"


def cgroup_type_show(k: Kernel, of: KernfsOpenFile) -> str:
    """cgroup_type_show(): every model cgroup is a plain domain."""
    return "domain\n"


def cgroup_type_write(k: Kernel, of: KernfsOpenFile, buf: str) -> int:
    """cgroup_type_write(): only ``threaded`` is accepted (-EINVAL otherwise); the model has
    no threaded cgroups, so that fails with -EOPNOTSUPP."""
    if strstrip(buf) != "threaded":
        return -EINVAL
    return -EOPNOTSUPP


def _int_or_max(value: int) -> str:
    return "max\n" if value == INT_MAX else f"{value}\n"


def _parse_int_or_max(buf: str) -> tuple[int, int]:
    """The parsing of cgroup_max_descendants_write() / cgroup_max_depth_write()."""
    buf = strstrip(buf)
    if buf == "max":
        return 0, INT_MAX
    err, val = kstrtoint(buf, 0)
    if err:
        return err, 0
    if val < 0:
        return -ERANGE, 0
    return 0, val


def cgroup_max_descendants_show(k: Kernel, of: KernfsOpenFile) -> str:
    """cgroup_max_descendants_show()."""
    return _int_or_max(k.load(of.cgrp, "max_descendants"))


def cgroup_max_descendants_write(k: Kernel, of: KernfsOpenFile, buf: str) -> int:
    """cgroup_max_descendants_write(): ``max`` or a non-negative int."""
    err, val = _parse_int_or_max(buf)
    if err:
        return err
    return _locked_store(k, of, "max_descendants", val, len(buf))


def cgroup_max_depth_show(k: Kernel, of: KernfsOpenFile) -> str:
    """cgroup_max_depth_show()."""
    return _int_or_max(k.load(of.cgrp, "max_depth"))


def cgroup_max_depth_write(k: Kernel, of: KernfsOpenFile, buf: str) -> int:
    """cgroup_max_depth_write(): ``max`` or a non-negative int."""
    err, val = _parse_int_or_max(buf)
    if err:
        return err
    return _locked_store(k, of, "max_depth", val, len(buf))


def _locked_store(k: Kernel, of: KernfsOpenFile, field: str, val: int, nbytes: int) -> int:
    """cgroup_kn_lock_live(), store, cgroup_kn_unlock(): -ENOENT if the cgroup died."""
    g = k.cgroup
    mutex_lock(k, g.cgroup_mutex)
    try:
        if cgroup_is_dead(of.cgrp):
            return -ENOENT
        k.store(of.cgrp, field, val)
        return nbytes
    finally:
        mutex_unlock(k, g.cgroup_mutex)


def cgroup_kill_write(k: Kernel, of: KernfsOpenFile, buf: str) -> int:
    """cgroup_kill_write(): ``1`` sends SIGKILL to every process in the cgroup and its live
    descendants (cgroup_kill()); other numbers fail with -ERANGE.

    The model's processes are idle between the operations they are told to do, so a killed
    one exits as soon as the write returns (the caller of the write delivers the signal).
    """
    err, kill = kstrtoint(strstrip(buf), 0)
    if err:
        return err
    if kill != 1:
        return -ERANGE
    g = k.cgroup
    mutex_lock(k, g.cgroup_mutex)
    try:
        if cgroup_is_dead(of.cgrp):
            return -ENOENT
        spin_lock_irq(k, g.css_set_lock)
        for dsct in walk_cgroups(of.cgrp, dying=False):
            for t in _tasks_of(k, dsct):
                if not t.daemon and t not in of.killed:
                    of.killed.append(t)
        spin_unlock_irq(k, g.css_set_lock)
    finally:
        mutex_unlock(k, g.cgroup_mutex)
    return len(buf)


cgroup_base_files: tuple[Cftype, ...] = (
    Cftype("type", cgroup_type_show, cgroup_type_write, CFTYPE_NOT_ON_ROOT),
    Cftype("procs", cgroup_procs_show, cgroup_procs_write),
    Cftype("threads", cgroup_procs_show, cgroup_threads_write),
    Cftype("controllers", cgroup_controllers_show),
    Cftype("subtree_control", cgroup_subtree_control_show, cgroup_subtree_control_file_write),
    Cftype("events", cgroup_events_show, flags=CFTYPE_NOT_ON_ROOT),
    Cftype("max.descendants", cgroup_max_descendants_show, cgroup_max_descendants_write),
    Cftype("max.depth", cgroup_max_depth_show, cgroup_max_depth_write),
    Cftype("stat", cgroup_stat_show),
    Cftype("kill", None, cgroup_kill_write, CFTYPE_NOT_ON_ROOT),
)


# ====================================================================== memory files
def _memcg(of: KernfsOpenFile) -> MemCgroup:
    css = of.css
    assert isinstance(css, MemCgroup)
    return css


def seq_puts_memcg_tunable(k: Kernel, value: int) -> str:
    """seq_puts_memcg_tunable(): ``max`` for PAGE_COUNTER_MAX, else bytes."""
    if value == PAGE_COUNTER_MAX:
        return "max\n"
    return f"{value * k.page_size}\n"


def try_to_free_mem_cgroup_pages(k: Kernel, memcg: MemCgroup, nr_pages: int, gfp: int) -> int:
    """try_to_free_mem_cgroup_pages() through the reclaim hook (:attr:`MemcgGlobals.reclaim`,
    which :mod:`memcgsim.mm.vmscan` installs): pages reclaimed; 0 without a hook."""
    reclaim = k.memcg.reclaim
    if reclaim is None:
        return 0
    return reclaim(k, memcg, nr_pages, gfp)


def memory_current_read(k: Kernel, of: KernfsOpenFile) -> str:
    """memory_current_read(): page_counter_read(&memcg->memory) * PAGE_SIZE."""
    memcg = _memcg(of)
    k.access(memcg.memory, "usage", _READ)
    return f"{memory_current_bytes(k, memcg)}\n"


def memory_peak_read(k: Kernel, of: KernfsOpenFile) -> str:
    """memory_peak_read() (5.19+): the counter's watermark * PAGE_SIZE."""
    memcg = _memcg(of)
    return f"{k.load(memcg.memory, 'watermark') * k.page_size}\n"


def memory_min_show(k: Kernel, of: KernfsOpenFile) -> str:
    """memory_min_show()."""
    return seq_puts_memcg_tunable(k, k.load(_memcg(of).memory, "min"))


def memory_min_write(k: Kernel, of: KernfsOpenFile, buf: str) -> int:
    """memory_min_write(): page_counter_memparse() then page_counter_set_min()."""
    err, nr_pages = page_counter_memparse(strstrip(buf), "max", k.page_size)
    if err:
        return err
    page_counter_set_min(k, _memcg(of).memory, nr_pages)
    return len(buf)


def memory_low_show(k: Kernel, of: KernfsOpenFile) -> str:
    """memory_low_show()."""
    return seq_puts_memcg_tunable(k, k.load(_memcg(of).memory, "low"))


def memory_low_write(k: Kernel, of: KernfsOpenFile, buf: str) -> int:
    """memory_low_write(): page_counter_memparse() then page_counter_set_low()."""
    err, nr_pages = page_counter_memparse(strstrip(buf), "max", k.page_size)
    if err:
        return err
    page_counter_set_low(k, _memcg(of).memory, nr_pages)
    return len(buf)


def memory_high_show(k: Kernel, of: KernfsOpenFile) -> str:
    """memory_high_show()."""
    return seq_puts_memcg_tunable(k, k.load(_memcg(of), "high"))


def memory_high_write(k: Kernel, of: KernfsOpenFile, buf: str) -> int:
    """memory_high_write() (6.1): set memory.high, then reclaim down to it.

    Drain the per-cpu stocks first (other CPUs' asynchronously, as drain_all_stock() does);
    then reclaim until usage fits, giving up after MAX_RECLAIM_RETRIES passes that reclaimed
    nothing.  The write succeeds whether or not usage came down.
    """
    memcg = _memcg(of)
    err, high = page_counter_memparse(strstrip(buf), "max", k.page_size)
    if err:
        return err
    k.store(memcg, "high", high)  # 5.3 keeps memcg->high; 5.8+ page_counter_set_high()
    nr_retries = MAX_RECLAIM_RETRIES
    drained = False
    while True:
        nr_pages = page_counter_read(memcg.memory)
        if nr_pages <= high:
            break
        if not drained:
            drain_all_stock(k, memcg)
            drained = True
            continue
        reclaimed = try_to_free_mem_cgroup_pages(k, memcg, nr_pages - high, GFP_KERNEL)
        if not reclaimed:
            if nr_retries == 0:
                break
            nr_retries -= 1
    return len(buf)


def memory_max_show(k: Kernel, of: KernfsOpenFile) -> str:
    """memory_max_show()."""
    return seq_puts_memcg_tunable(k, k.load(_memcg(of).memory, "max"))


def memory_max_write(k: Kernel, of: KernfsOpenFile, buf: str) -> int:
    """memory_max_write(): xchg the limit, then bring usage under it.

    Drain the stocks once, reclaim (each pass that reclaims nothing uses up one of
    MAX_RECLAIM_RETRIES), then count an ``oom`` event in memory.events and call the OOM
    killer; the model has none (mem_cgroup_out_of_memory() returns false), so the loop ends
    there.  The write succeeds whether or not usage came down.
    """
    memcg = _memcg(of)
    err, max_pages = page_counter_memparse(strstrip(buf), "max", k.page_size)
    if err:
        return err
    k.xchg(memcg.memory, "max", max_pages)
    nr_reclaims = MAX_RECLAIM_RETRIES
    drained = False
    while True:
        nr_pages = page_counter_read(memcg.memory)
        if nr_pages <= max_pages:
            break
        if not drained:
            drain_all_stock(k, memcg)
            drained = True
            continue
        if nr_reclaims:
            if not try_to_free_mem_cgroup_pages(k, memcg, nr_pages - max_pages, GFP_KERNEL):
                nr_reclaims -= 1
            continue
        memcg_memory_event(k, memcg, MemcgEvent.MEMCG_OOM)
        break  # mem_cgroup_out_of_memory(): no OOM killer in the model
    return len(buf)


def _events_show(events: list[int]) -> str:
    """__memory_events_show()."""
    return (f"low {events[MemcgEvent.MEMCG_LOW]}\n"
            f"high {events[MemcgEvent.MEMCG_HIGH]}\n"
            f"max {events[MemcgEvent.MEMCG_MAX]}\n"
            f"oom {events[MemcgEvent.MEMCG_OOM]}\n"
            f"oom_kill {events[MemcgEvent.MEMCG_OOM_KILL]}\n"
            f"oom_group_kill {events[MemcgEvent.MEMCG_OOM_GROUP_KILL]}\n")


def memory_events_show(k: Kernel, of: KernfsOpenFile) -> str:
    """memory_events_show(): hierarchical event counts."""
    memcg = _memcg(of)
    k.access(memcg, "memory_events", _READ)
    return _events_show(list(memcg.memory_events))


def memory_events_local_show(k: Kernel, of: KernfsOpenFile) -> str:
    """memory_events_local_show(): this memcg's own event counts."""
    memcg = _memcg(of)
    k.access(memcg, "memory_events_local", _READ)
    return _events_show(list(memcg.memory_events_local))


def memory_stat_show(k: Kernel, of: KernfsOpenFile) -> str:
    """memory_stat_show(): memory_stat_format() (:mod:`memcgsim.mm.memcg_stat`), the
    hierarchical counters with the lag of their per-cpu batching, every 6.1 field."""
    memcg = _memcg(of)
    k.access(memcg, "vmstats", _READ)
    return memory_stat_format(k, memcg)


def memory_oom_group_show(k: Kernel, of: KernfsOpenFile) -> str:
    """memory_oom_group_show()."""
    return f"{int(k.load(_memcg(of), 'oom_group'))}\n"


def memory_oom_group_write(k: Kernel, of: KernfsOpenFile, buf: str) -> int:
    """memory_oom_group_write(): 0 or 1 (-EINVAL otherwise).  Stored; the model has no OOM
    killer to honour it."""
    err, val = kstrtoint(strstrip(buf), 0)
    if err:
        return err
    if val not in (0, 1):
        return -EINVAL
    k.store(_memcg(of), "oom_group", bool(val))
    return len(buf)


def memory_reclaim(k: Kernel, of: KernfsOpenFile, buf: str) -> int:
    """memory_reclaim() (5.19+): reclaim the given number of bytes from the cgroup.

    An empty write means PAGE_COUNTER_MAX (page_counter_memparse() with ``""`` as its
    "max").  Fails with -EAGAIN once MAX_RECLAIM_RETRIES passes reclaimed nothing more.
    """
    memcg = _memcg(of)
    err, nr_to_reclaim = page_counter_memparse(strstrip(buf), "", k.page_size)
    if err:
        return err
    nr_retries = MAX_RECLAIM_RETRIES
    nr_reclaimed = 0
    while nr_reclaimed < nr_to_reclaim:
        reclaimed = try_to_free_mem_cgroup_pages(k, memcg, nr_to_reclaim - nr_reclaimed,
                                                 GFP_KERNEL)
        if not reclaimed:
            if nr_retries == 0:
                return -EAGAIN
            nr_retries -= 1
        nr_reclaimed += reclaimed
    return len(buf)


memory_files: tuple[Cftype, ...] = (
    Cftype("current", memory_current_read, None, CFTYPE_NOT_ON_ROOT, "memory"),
    Cftype("peak", memory_peak_read, None, CFTYPE_NOT_ON_ROOT, "memory"),
    Cftype("min", memory_min_show, memory_min_write, CFTYPE_NOT_ON_ROOT, "memory"),
    Cftype("low", memory_low_show, memory_low_write, CFTYPE_NOT_ON_ROOT, "memory"),
    Cftype("high", memory_high_show, memory_high_write, CFTYPE_NOT_ON_ROOT, "memory"),
    Cftype("max", memory_max_show, memory_max_write, CFTYPE_NOT_ON_ROOT, "memory"),
    Cftype("events", memory_events_show, None, CFTYPE_NOT_ON_ROOT, "memory"),
    Cftype("events.local", memory_events_local_show, None, CFTYPE_NOT_ON_ROOT, "memory"),
    Cftype("stat", memory_stat_show, None, 0, "memory"),
    Cftype("oom.group", memory_oom_group_show, memory_oom_group_write, CFTYPE_NOT_ON_ROOT,
           "memory"),
    Cftype("reclaim", None, memory_reclaim, 0, "memory"),
)


def cgroup_files(k: Kernel, cgrp: Cgroup) -> dict[str, tuple[Cftype, CgroupSubsysState | None]]:
    """The files in ``cgrp``'s directory (css_populate_dir()), by name, with their css.

    Core files on every cgroup (minus CFTYPE_NOT_ON_ROOT ones on the root); a controller's
    files where the cgroup has that controller's css (the parent enabled it).
    """
    is_root = cgroup_parent(cgrp) is None
    out: dict[str, tuple[Cftype, CgroupSubsysState | None]] = {}
    for cft in cgroup_base_files:
        if not (is_root and cft.flags & CFTYPE_NOT_ON_ROOT):
            out[cft.file_name] = (cft, None)
    for ss in k.cgroup.subsystems:
        css = cgrp.subsys.get(ss.id)
        if css is None:
            continue
        files = memory_files if ss.name == "memory" else ()
        for cft in files:
            if not (is_root and cft.flags & CFTYPE_NOT_ON_ROOT):
                out[cft.file_name] = (cft, css)
    return out
