"""tools/testing/selftests/cgroup/test_kmem.c (as of 6.x), ported to the model's user space.

Each test keeps the C's steps, names, sizes and thresholds; it reads and writes cgroup files
by path and runs processes, nothing else.  Not ported: test_kmem_proc_kpagecgroup (no
/proc/kpagecgroup) and test_kmem_kernel_stacks (the model has no kernel stacks).

A test the model cannot run, because it lacks what the test exercises (the dentry cache
behind stat(2) of missing names), reports KSFT_SKIP with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from memcgsim.selftests.cgroup.cgroup_util import (
    DEFAULT_WAIT_INTERVAL_US,
    KSFT_FAIL,
    KSFT_PASS,
    KSFT_SKIP,
    CgroupUtil,
)
from memcgsim.userspace import Unsupported

if TYPE_CHECKING:
    from memcgsim.kernel.task import Task
    from memcgsim.userspace import Userspace

__all__ = [
    "KMEM_DEAD_WAIT_RETRIES",
    "TESTS",
    "KselftestResult",
    "main",
    "max_vmstat_error",
    "test_kmem_basic",
    "test_kmem_dead_cgroups",
    "test_kmem_memcg_deletion",
    "test_percpu_basic",
]

KMEM_DEAD_WAIT_RETRIES = 80


def max_vmstat_error(u: CgroupUtil) -> int:
    """MAX_VMSTAT_ERROR: sysconf(_SC_PAGESIZE) * 64 * get_nprocs() ("percpu batches 64 pages")."""
    return u.sysconf_pagesize() * 64 * u.get_nprocs()


def alloc_dcache(u: CgroupUtil, cgroup: str, proc: Task, n: int) -> int:
    """alloc_dcache(): ``n`` stat(2)s of missing long names, one negative dentry each."""
    u.us.stat_missing(proc, n)
    return 0


def alloc_kmem_smp(u: CgroupUtil, cgroup: str, proc: Task, arg: int) -> int:
    """alloc_kmem_smp(): 2 * get_nprocs() threads, each alloc_dcache(100), joined.

    The threads share the process id that alloc_dcache() puts in the names, so they look up
    the same 100 names: the first lookup of a name allocates its dentry, the others find it.
    """
    us = u.us
    nr_threads = 2 * u.get_nprocs()
    job = us.alloc_dcache_job(100, proc.pid)
    threads = [us.fork(f"{proc.name}-t{i}", persistent=False, parent=proc)
               for i in range(nr_threads)]
    rets: list[int] = us.run_parallel([(t, job) for t in threads])
    return next((r for r in rets if r), 0)


def cg_run_in_subcgroups(u: CgroupUtil, parent: str,
                         fn: Callable[[CgroupUtil, str, Task, int], int], arg: int,
                         times: int) -> int:
    """cg_run_in_subcgroups(): ``times`` sequential create / run / destroy of child%d."""
    for i in range(times):
        child = u.cg_name_indexed(parent, "child", i)
        if u.cg_create(child):
            u.cg_destroy(child)
            return -1
        if u.cg_run(child, fn, arg):
            u.cg_destroy(child)
            return -1
        u.cg_destroy(child)
    return 0


def test_kmem_basic(u: CgroupUtil, root: str) -> int:
    """100000 negative dentries; "slab" must pass 1M; then memory.high = 1M and, a second
    later, slab and memory.current must both be under half the first slab."""
    ret = KSFT_FAIL
    cg = u.cg_name(root, "kmem_basic_test")
    try:
        if u.cg_create(cg):
            return ret
        if u.cg_run(cg, alloc_dcache, 100000):
            return ret
        slab0 = u.cg_read_key_long(cg, "memory.stat", "slab ")
        if slab0 < (1 << 20):
            u.printf(f"slab0 {slab0}\n")
            return ret
        u.cg_write(cg, "memory.high", "1M")
        u.sleep(1)  # wait for RCU freeing
        slab1 = u.cg_read_key_long(cg, "memory.stat", "slab ")
        if slab1 < 0:
            return ret
        current = u.cg_read_long(cg, "memory.current")
        if current < 0:
            return ret
        if slab1 < slab0 // 2 and current < slab0 // 2:
            ret = KSFT_PASS
        else:
            u.printf(f"slab0 {slab0}\nslab1 {slab1}\ncurrent {current}\n")
        return ret
    finally:
        u.cg_destroy(cg)


def test_kmem_memcg_deletion(u: CgroupUtil, root: str) -> int:
    """100 children, each with 2 * nprocs threads making dentries, created and removed in
    turn; then the parent's memory.current must match anon + file + kernel + sock within
    MAX_VMSTAT_ERROR."""
    ret = KSFT_FAIL
    parent = u.cg_name(root, "kmem_memcg_deletion_test")
    try:
        if u.cg_create(parent):
            return ret
        if u.cg_write(parent, "cgroup.subtree_control", "+memory"):
            return ret
        if cg_run_in_subcgroups(u, parent, alloc_kmem_smp, 0, 100):
            return ret
        current = u.cg_read_long(parent, "memory.current")
        anon = u.cg_read_key_long(parent, "memory.stat", "anon ")
        file = u.cg_read_key_long(parent, "memory.stat", "file ")
        kernel = u.cg_read_key_long(parent, "memory.stat", "kernel ")
        sock = u.cg_read_key_long(parent, "memory.stat", "sock ")
        if current < 0 or anon < 0 or file < 0 or kernel < 0 or sock < 0:
            return ret
        total = anon + file + kernel + sock
        if abs(total - current) < max_vmstat_error(u):
            ret = KSFT_PASS
        else:
            u.printf(f"memory.current = {current}\n")
            u.printf(f"anon + file + kernel + sock = {total}\n")
            u.printf(f"anon = {anon}\nfile = {file}\nkernel = {kernel}\nsock = {sock}\n")
        return ret
    finally:
        u.cg_destroy(parent)


def test_kmem_dead_cgroups(u: CgroupUtil, root: str) -> int:
    """30 children, each making 100 dentries, created and removed in turn; within about 8 s
    (80 polls 100 ms apart) the parent's nr_dying_descendants must reach 0."""
    ret = KSFT_FAIL
    parent = u.cg_name(root, "kmem_dead_cgroups_test")
    try:
        if u.cg_create(parent):
            return ret
        if u.cg_write(parent, "cgroup.subtree_control", "+memory"):
            return ret
        if cg_run_in_subcgroups(u, parent, alloc_dcache, 100, 30):
            return ret
        dead = u.cg_read_key_long_poll(parent, "cgroup.stat", "nr_dying_descendants ", 0,
                                       KMEM_DEAD_WAIT_RETRIES, DEFAULT_WAIT_INTERVAL_US)
        if dead:
            u.printf(f"nr_dying_descendants {dead}\n")
            return ret
        return KSFT_PASS
    finally:
        u.cg_destroy(parent)


def test_percpu_basic(u: CgroupUtil, root: str) -> int:
    """1000 empty children; the parent's memory.current must be positive and match percpu +
    slab within MAX_VMSTAT_ERROR (the children's memcg structures are charged to it)."""
    ret = KSFT_FAIL
    parent = u.cg_name(root, "percpu_basic_test")
    if u.cg_create(parent):
        return ret
    try:
        if u.cg_write(parent, "cgroup.subtree_control", "+memory"):
            return ret
        for i in range(1000):
            if u.cg_create(u.cg_name_indexed(parent, "child", i)):
                return ret
        current = u.cg_read_long(parent, "memory.current")
        percpu = u.cg_read_key_long(parent, "memory.stat", "percpu ")
        slab = u.cg_read_key_long(parent, "memory.stat", "slab ")
        if (current > 0 and percpu > 0 and slab >= 0
                and abs(current - (percpu + slab)) < max_vmstat_error(u)):
            ret = KSFT_PASS
        else:
            u.printf(f"memory.current {current}\npercpu {percpu}\nslab {slab}\n"
                     f"delta {current - (percpu + slab)}\n")
        return ret
    finally:
        for i in range(1000):
            u.cg_destroy(u.cg_name_indexed(parent, "child", i))
        u.cg_destroy(parent)


#: the tests in test_kmem.c's order (minus the two not ported)
TESTS: dict[str, Callable[[CgroupUtil, str], int]] = {
    "test_kmem_basic": test_kmem_basic,
    "test_kmem_memcg_deletion": test_kmem_memcg_deletion,
    "test_kmem_dead_cgroups": test_kmem_dead_cgroups,
    "test_percpu_basic": test_percpu_basic,
}


@dataclass
class KselftestResult:
    """One test's outcome: a KSFT_* code, what it printed, and the reason for a skip."""

    name: str
    code: int
    output: list[str] = field(default_factory=list)
    skip_reason: str = ""

    @property
    def outcome(self) -> str:
        return {KSFT_PASS: "pass", KSFT_SKIP: "skip"}.get(self.code, "fail")


def run_test(us: Userspace, name: str) -> KselftestResult:
    """Run one test on ``us``'s machine (main()'s setup first)."""
    u = CgroupUtil(us)
    root = u.cg_find_unified_root()
    if u.cg_read_strstr(root, "cgroup.controllers", "memory"):
        return KselftestResult(name, KSFT_SKIP, skip_reason="memory controller isn't available")
    if u.cg_read_strstr(root, "cgroup.subtree_control", "memory") and u.cg_write(
            root, "cgroup.subtree_control", "+memory"):
        return KselftestResult(name, KSFT_SKIP, skip_reason="Failed to set memory controller")
    try:
        code = TESTS[name](u, root)
    except Unsupported as e:
        return KselftestResult(name, KSFT_SKIP, u.out, skip_reason=str(e))
    return KselftestResult(name, code, u.out)


def main(make_userspace: Callable[[], Userspace], names: list[str] | None = None,
         print_line: Callable[[str], None] = print) -> int:
    """test_kmem's main(): each test on a fresh machine, TAP on ``print_line``; the exit
    status (0 unless a test failed)."""
    names = list(TESTS) if names is None else names
    print_line("TAP version 13")
    print_line(f"1..{len(names)}")
    counts = {"pass": 0, "fail": 0, "skip": 0}
    for i, name in enumerate(names, 1):
        res = run_test(make_userspace(), name)
        for line in "".join(res.output).splitlines():
            print_line(line)
        counts[res.outcome] += 1
        if res.code == KSFT_PASS:
            print_line(f"ok {i} {name}")
        elif res.code == KSFT_SKIP:
            print_line(f"# {res.skip_reason}")
            print_line(f"ok {i} # SKIP {name}")
        else:
            print_line(f"not ok {i} {name}")
    print_line(f"# Totals: pass:{counts['pass']} fail:{counts['fail']} xfail:0 xpass:0 "
               f"skip:{counts['skip']} error:0")
    return 1 if counts["fail"] else 0
