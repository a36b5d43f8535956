"""memcg: byte charging through per-cpu stocks, memory.max, vmstat batching and flushing."""

from __future__ import annotations

import pytest

from memcgsim import Kernel
from memcgsim.kernel.heap import GFP_KERNEL_ACCOUNT, kfree, kmalloc
from memcgsim.mm.memcontrol import (
    MEMCG_CHARGE_BATCH,
    MemcgEvent,
    MemcgStat,
    check_memcg_conservation,
    memcg_page_state,
    memory_current_bytes,
)
from memcgsim.mm.page_counter import page_counter_set_max
from memcgsim.mm.slab import KmallocObject

PAGE = 4096


def _alloc(k: Kernel, task, n: int, size: int = 64) -> list[KmallocObject | None]:  # type: ignore[no-untyped-def]
    return k.call(lambda k: [kmalloc(k, KmallocObject, size, gfp=GFP_KERNEL_ACCOUNT)
                             for _ in range(n)], task=task)


def test_first_byte_charge_takes_a_batch_and_stocks_the_rest(k: Kernel) -> None:
    k.mkdir("/a")
    p = k.new_process("p", "/a")
    m = k.mem_cgroup("/a")
    (obj,) = _alloc(k, p, 1, 100)
    assert obj is not None
    assert memory_current_bytes(k, m) == MEMCG_CHARGE_BATCH * PAGE
    stock = k.memcg.stocks[0]
    assert stock.subpage_cached is m
    assert stock.nr_bytes == MEMCG_CHARGE_BATCH * PAGE - 100
    _alloc(k, p, 10, 100)  # served from the stock: no new page charge
    assert memory_current_bytes(k, m) == MEMCG_CHARGE_BATCH * PAGE
    k.settle()


def test_root_and_kthread_allocations_are_not_charged(k: Kernel) -> None:
    p = k.new_process("p")  # in the root cgroup
    (obj,) = _alloc(k, p, 1)
    assert obj is not None and obj.memcg_ptr is None
    k.settle()


def test_charge_over_memory_max_fails_and_counts_events(k: Kernel) -> None:
    k.mkdir("/a")
    m = k.mem_cgroup("/a")
    assert k.call(lambda k: page_counter_set_max(k, m.memory, 2)) == 0
    p = k.new_process("p", "/a")
    objs = _alloc(k, p, 3, 3000)  # the third needs a third page
    assert objs[0] is not None and objs[1] is not None
    assert objs[2] is None
    assert m.memory.failcnt > 0
    assert m.memory_events[MemcgEvent.MEMCG_MAX] >= 1
    assert m.memory_events[MemcgEvent.MEMCG_OOM] == 1
    k.settle()


def test_slab_stats_are_batched_per_cpu_then_flushed_up_the_tree(k: Kernel) -> None:
    k.mkdir("/a", subtree_control="+memory")
    k.mkdir("/a/b")
    p = k.new_process("p", "/a/b")
    ma, mb = k.mem_cgroup("/a"), k.mem_cgroup("/a/b")
    _alloc(k, p, 10, 64)  # 640 bytes: below the per-cpu threshold
    assert memcg_page_state(mb, MemcgStat.NR_SLAB_UNRECLAIMABLE) == 0
    objs = _alloc(k, p, 3000, 64)  # 192000 bytes: crosses MEMCG_CHARGE_BATCH pages of bytes
    assert memcg_page_state(mb, MemcgStat.NR_SLAB_UNRECLAIMABLE) > 0
    assert memcg_page_state(ma, MemcgStat.NR_SLAB_UNRECLAIMABLE) == memcg_page_state(
        mb, MemcgStat.NR_SLAB_UNRECLAIMABLE)
    for o in objs:
        k.heap.roots[o._koid] = o  # type: ignore[union-attr]
    k.attach(p, "/")
    k.rmdir("/a/b")
    k.settle()
    # Offline and free flushed b's per-cpu remainder into a: 5.3 flushes slab stats twice.
    assert memcg_page_state(ma, MemcgStat.NR_SLAB_UNRECLAIMABLE) > 3010 * 64


def test_5_4_fix_flushes_slab_stats_once() -> None:
    k = Kernel(seed=1)
    k.memcg.flush_slab_vmstats_at_offline = False
    k.mkdir("/a", subtree_control="+memory")
    k.mkdir("/a/b")
    p = k.new_process("p", "/a/b")
    objs = _alloc(k, p, 3010, 64)
    for o in objs:
        k.heap.roots[o._koid] = o  # type: ignore[union-attr]
    k.attach(p, "/")
    k.rmdir("/a/b")
    k.settle()
    assert memcg_page_state(k.mem_cgroup("/a"), MemcgStat.NR_SLAB_UNRECLAIMABLE) == 3010 * 64


def test_offline_drains_stocks_and_strands_the_subpage_remainder(k: Kernel) -> None:
    """A finding about RFC 01/14: a drained byte stock leaves its sub-page remainder in the
    dying memcg's nr_stocked_bytes, which nothing passes on, so it stays charged above."""
    k.mkdir("/a", subtree_control="+memory")
    k.mkdir("/a/b")
    p = k.new_process("p", "/a/b")
    objs = _alloc(k, p, 1, 100)
    k.heap.roots[objs[0]._koid] = objs[0]  # type: ignore[union-attr]
    k.attach(p, "/")
    k.rmdir("/a/b")
    k.settle()
    assert k.memcg.stranded_bytes_total == (MEMCG_CHARGE_BATCH * PAGE - 100) % PAGE
    ma = k.mem_cgroup("/a")
    assert memory_current_bytes(k, ma) == 100 + k.memcg.stranded_bytes_total
    check_memcg_conservation(k)
    k.call(lambda k: kfree(k, objs[0]))
    k.settle()


@pytest.mark.parametrize("nr", [1, 100, 5000])
def test_conservation_holds_after_allocs_and_frees(k: Kernel, nr: int) -> None:
    k.mkdir("/a")
    p = k.new_process("p", "/a", cpu=1)
    objs = _alloc(k, p, nr, 200)
    k.call(lambda k: [kfree(k, o) for o in objs[::2]], task=p)
    for o in objs[1::2]:
        k.heap.roots[o._koid] = o  # type: ignore[union-attr]
    k.settle()  # runs check_memcg_conservation and check_memcg_refs
    assert not k.violations
