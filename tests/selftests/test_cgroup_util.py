"""The port of cgroup_util.c behaves as the C helpers do."""

from __future__ import annotations

import pytest

from memcgsim import Kernel
from memcgsim.selftests.cgroup.cgroup_util import (
    DEFAULT_WAIT_INTERVAL_US,
    EXIT_FAILURE,
    CgroupUtil,
    atol,
)
from memcgsim.userspace import Userspace


@pytest.fixture
def u() -> CgroupUtil:
    return CgroupUtil(Userspace(Kernel(nr_cpus=2, seed=0)))


@pytest.mark.parametrize(("text", "value"), [
    ("42\n", 42), ("  -7x", -7), ("+3", 3), ("max\n", 0), ("", 0), ("\n12", 12),
])
def test_atol_reads_a_leading_integer(text: str, value: int) -> None:
    assert atol(text) == value


def test_read_helpers_follow_the_c_conventions(u: CgroupUtil) -> None:
    root = u.cg_find_unified_root()
    assert root == "/sys/fs/cgroup"
    cg = u.cg_name(root, "t")
    assert u.cg_create(cg) == 0
    assert u.cg_create(cg) == -1
    assert u.cg_read_long(cg, "memory.current") == 0
    assert u.cg_read_long(cg, "memory.max") == 0  # atol("max")
    assert u.cg_read_long(cg, "nope") == -1
    assert u.cg_read_key_long(cg, "memory.stat", "slab ") == 0
    assert u.cg_read_key_long(cg, "memory.stat", "no_such_key ") == -1
    assert u.cg_read_key_long(cg, "cgroup.stat", "nr_dying_descendants ") == 0
    assert u.cg_read_strstr(root, "cgroup.controllers", "memory") == 0
    assert u.cg_read_strstr(root, "cgroup.controllers", "cpu") == -1
    assert u.cg_write(cg, "memory.max", "1M") == 0
    assert u.cg_write(cg, "memory.max", "1.5M") == -1
    assert u.cg_read_long(cg, "memory.max") == 1 << 20


def test_cg_run_runs_fn_in_a_process_inside_the_cgroup_that_then_exits(u: CgroupUtil) -> None:
    cg = u.cg_name(u.cg_find_unified_root(), "run")
    u.cg_create(cg)
    seen: list[str] = []

    def fn(util: CgroupUtil, cgroup: str, proc: object, arg: int) -> int:
        seen.append(util.cg_read(cgroup, "cgroup.procs") or "")
        return arg

    assert u.cg_run(cg, fn, 5) == 5
    assert seen[0].strip().isdigit()
    assert u.cg_read(cg, "cgroup.procs") == ""
    assert u.cg_run(u.cg_name(u.cg_find_unified_root(), "missing"), fn, 0) == EXIT_FAILURE


def test_cg_destroy_kills_processes_on_ebusy_and_accepts_enoent(u: CgroupUtil) -> None:
    cg = u.cg_name(u.cg_find_unified_root(), "busy")
    u.cg_create(cg)
    p = u.us.spawn("p", cg)
    assert u.cg_destroy(cg) == 0
    assert p.exited
    assert u.cg_destroy(cg) == 0
    u.cg_create(cg)
    u.cg_create(cg + "/child")
    assert u.cg_destroy(cg) == -1  # a live child: killing processes never helps


def test_poll_rereads_until_the_value_or_the_retries_run_out(u: CgroupUtil) -> None:
    """The shape of test_kmem_dead_cgroups with accounted kmallocs: 30 children come and go
    leaving objects; the poll waits (simulated time) for the dying ones to be freed."""
    root = u.cg_find_unified_root()
    parent = u.cg_name(root, "parent")
    u.cg_create(parent)
    u.cg_write(parent, "cgroup.subtree_control", "+memory")

    def alloc(util: CgroupUtil, cgroup: str, proc: object, n: int) -> int:
        util.us.alloc(proc, "kmalloc-192", n)  # type: ignore[arg-type]
        return 0

    for i in range(30):
        child = u.cg_name_indexed(parent, "child", i)
        assert u.cg_create(child) == 0
        assert u.cg_run(child, alloc, 100) == 0
        assert u.cg_destroy(child) == 0
    # cg_run()'s waitpid() let the earlier children's offline and release run; the last
    # one was removed after it.
    assert u.cg_read_key_long(parent, "cgroup.stat", "nr_dying_descendants ") == 1
    clock = u.us.k.clock_ns
    dead = u.cg_read_key_long_poll(parent, "cgroup.stat", "nr_dying_descendants ", 0, 80,
                                   DEFAULT_WAIT_INTERVAL_US)
    assert dead == 0  # memcg-ptr: the ptrs moved to the parent, nothing pins the children
    assert u.us.k.clock_ns - clock == DEFAULT_WAIT_INTERVAL_US * 1000  # one poll interval
    assert u.cg_read_long(parent, "memory.current") >= 30 * 100 * 192
    assert u.cg_read_key_long_poll(parent, "cgroup.stat", "nr_dying_descendants ", 5, 3,
                                   DEFAULT_WAIT_INTERVAL_US) == 0
    assert u.us.k.clock_ns - clock == 4 * DEFAULT_WAIT_INTERVAL_US * 1000
