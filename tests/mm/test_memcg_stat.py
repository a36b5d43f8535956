"""memory.stat: the kernel's field names and order, per-cpu batching and flushing, slab in
bytes or pages by design era, and 5.9's percpu accounting to the parent."""

from __future__ import annotations

import pytest

from memcgsim import Kernel
from memcgsim.kernel.heap import GFP_KERNEL
from memcgsim.mm.memcg_stat import MEMORY_STAT_FIELDS, memory_stat, memory_stat_format
from memcgsim.mm.memcontrol import (
    MemCgroup,
    MemcgStat,
    _css_descendants_pre,
    memcg_flush_percpu_vmstats,
    memory_current_bytes,
)
from memcgsim.mm.slab_common import kmem_cache_by_name
from memcgsim.mm.slub import kmem_cache_alloc, kmem_cache_alloc_bulk


def _exact(m: MemCgroup, idx: MemcgStat) -> int:
    """The counter once every per-cpu batch below ``m`` is flushed (without flushing:
    memcg_flush_percpu_vmstats() does not zero them, as in 5.3)."""
    total = m.vmstats[idx]
    for d in _css_descendants_pre(m):
        if d.vmstats_percpu is not None:
            total += sum(cpu[idx] for cpu in d.vmstats_percpu.stat)
    return total


def _dentries(k: Kernel, path: str, n: int, bulk: bool = False) -> None:
    p = k.new_process("p", path)
    s = kmem_cache_by_name(k, "dentry")
    if bulk:
        k.call(lambda k: kmem_cache_alloc_bulk(k, s, GFP_KERNEL, n), task=p)
    else:
        k.call(lambda k: [kmem_cache_alloc(k, s, GFP_KERNEL) for _ in range(n)], task=p)
    k.attach(p, "/")


def test_fields_are_the_kernels_in_its_order() -> None:
    k = Kernel(nr_cpus=2, seed=0)
    k.mkdir("/a")
    text = memory_stat_format(k, k.mem_cgroup("/a"))
    names = [line.split()[0] for line in text.splitlines()]
    assert names == list(MEMORY_STAT_FIELDS) and len(names) == 47
    assert names.index("kernel") < names.index("percpu") < names.index("slab")


@pytest.mark.parametrize("design", ["memcg-ptr", "objcg", "walk"])
def test_slab_bytes_are_batched_per_cpu_then_flushed(design: str) -> None:
    k = Kernel(nr_cpus=2, seed=0, design=design)
    k.mkdir("/a")
    m = k.mem_cgroup("/a")
    _dentries(k, "/a", 10)
    assert memory_stat(k, m)["slab"] == 0  # 10 dentries stay in this CPU's batch
    _dentries(k, "/a", 2000)
    st = memory_stat(k, m)
    assert 0 < st["slab_reclaimable"] <= 2010 * 200 and st["slab_unreclaimable"] == 0
    memcg_flush_percpu_vmstats(k, m, slab_only=False)
    full = 2010 * 192 + (2010 * 8 if design == "objcg" else 0)
    assert memory_stat(k, m)["slab"] == full
    assert memory_stat(k, m)["kernel"] >= full


@pytest.mark.parametrize("design", ["page-pinning", "cache-reparent"])
def test_page_designs_count_whole_slab_pages(design: str) -> None:
    k = Kernel(nr_cpus=1, seed=0, design=design)
    k.mkdir("/a")
    m = k.mem_cgroup("/a")
    _dentries(k, "/a", 2100, bulk=True)
    memcg_flush_percpu_vmstats(k, m, slab_only=False)
    assert memory_stat(k, m)["slab"] == 100 * 4096  # 2100 dentries = 100 order-0 slabs


def test_objcg_charges_a_childs_percpu_statistics_to_the_parent() -> None:
    k = Kernel(nr_cpus=2, seed=0, design="objcg")
    k.mkdir("/p", subtree_control="+memory")
    m = k.mem_cgroup("/p")
    for i in range(40):
        k.mkdir(f"/p/c{i}")
    per = 3504 * 2
    # batched: what memory.stat shows lags by less than a batch per CPU
    assert 0 < memory_stat(k, m)["percpu"] <= 40 * per
    assert _exact(m, MemcgStat.MEMCG_PERCPU_B) == 40 * per
    assert memory_current_bytes(k, m) >= 40 * per
    for i in range(40):
        k.rmdir(f"/p/c{i}")
    k.settle()
    assert _exact(m, MemcgStat.MEMCG_PERCPU_B) == 0


def test_other_designs_do_not_account_percpu() -> None:
    k = Kernel(nr_cpus=2, seed=0, design="memcg-ptr")
    k.mkdir("/p", subtree_control="+memory")
    k.mkdir("/p/c")
    m = k.mem_cgroup("/p")
    assert _exact(m, MemcgStat.MEMCG_PERCPU_B) == 0
