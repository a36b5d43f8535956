"""Slab reclaim (mm/vmscan.c, fs/super.c, fs/dcache.c, fs/inode.c; 5.3).

Shrinkers count and scan reclaimable objects per memcg: the superblock shrinker
(``super_cache_count``/``super_cache_scan``) takes unused dentries and inodes off the memcg's
list_lru (``prune_dcache_sb``/``prune_icache_sb``) and frees them after an RCU grace period
(``d_free()``'s ``call_rcu(__d_free)``, ``destroy_inode()``'s ``call_rcu(i_callback)``).

Reclaim runs when a charge would exceed an ancestor's memory.max (``try_charge`` calls
:func:`try_to_free_mem_cgroup_pages` through ``k.memcg.reclaim``), on return to user space
when a charge went over memory.high (:func:`mem_cgroup_handle_over_high`), and for
``echo 2 > /proc/sys/vm/drop_caches`` (:func:`drop_slab`).

Model simplifications: the model has no page cache or anonymous memory, so reclaim is slab
reclaim only; no shrinker deferral (``nr_deferred``); the one superblock has one shrinker per
reclaimable cache; the RCU-deferred frees of one scan go in one callback.  Because freeing
after a grace period means a reclaim pass gives back nothing at once, memcg reclaim waits for
the frees it caused (``rcu_barrier``) before it measures what it reclaimed; in the kernel the
charge path's repeated reclaim attempts give the grace period time to end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from memcgsim.cgroup.cgroup import css_put
from memcgsim.kernel.heap import GFP_KERNEL, Gfp
from memcgsim.kernel.objects import KObject
from memcgsim.kernel.rcu import RcuHead, call_rcu, rcu_barrier
from memcgsim.kernel.task import AccessKind
from memcgsim.mm.list_lru import ListLru, list_lru_count_one, list_lru_walk_one
from memcgsim.mm.memcontrol import (
    MemcgEvent,
    MemCgroup,
    _css_descendants_pre,
    all_memcgs,
    drain_all_stock,
    get_mem_cgroup_from_current,
    memcg_memory_event,
    parent_mem_cgroup,
)
from memcgsim.mm.page_counter import PAGE_COUNTER_MAX, page_counter_read

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.mm.slab_common import KmemCache

__all__ = [
    "DEF_PRIORITY",
    "LruCacheShrinker",
    "ShrinkControl",
    "Shrinker",
    "VmscanGlobals",
    "do_shrink_slab",
    "drop_caches",
    "drop_slab",
    "mem_cgroup_handle_over_high",
    "memcg_set_high",
    "memcg_set_max",
    "register_shrinker",
    "shrink_slab",
    "try_to_free_mem_cgroup_pages",
    "vmscan_init",
]

#: SHRINK_BATCH
SHRINK_BATCH = 128
#: DEFAULT_SEEKS
DEFAULT_SEEKS = 2
#: DEF_PRIORITY: the first reclaim pass scans 1/4096 of each list
DEF_PRIORITY = 12
#: SWAP_CLUSTER_MAX
SWAP_CLUSTER_MAX = 32
#: MEM_CGROUP_RECLAIM_RETRIES
MAX_RECLAIM_RETRIES = 5


@dataclass
class ShrinkControl:
    """struct shrink_control."""

    gfp_mask: int
    memcg: MemCgroup | None
    nr_to_scan: int = 0
    nr_scanned: int = 0


class Shrinker:
    """struct shrinker: count_objects / scan_objects, SHRINKER_MEMCG_AWARE."""

    name = "shrinker"
    seeks = DEFAULT_SEEKS
    memcg_aware = True

    def count_objects(self, k: Kernel, sc: ShrinkControl) -> int:
        raise NotImplementedError

    def scan_objects(self, k: Kernel, sc: ShrinkControl) -> int:
        raise NotImplementedError


class _DisposeBatch(KObject):
    """The dispose list of one scan, freed after a grace period (d_free's call_rcu)."""

    ktype = "struct dispose_list"

    def __init__(self, cache: KmemCache, idxs: list[int]) -> None:
        super().__init__()
        self.cache = cache
        self.idxs = idxs
        self.rcu = RcuHead(self, "rcu")


class LruCacheShrinker(Shrinker):
    """super_cache_count()/super_cache_scan() for one list_lru of the superblock:
    prune_dcache_sb() for dentries, prune_icache_sb() for inodes."""

    def __init__(self, lru: ListLru) -> None:
        self.lru = lru
        self.name = f"super_cache_scan:{lru.cache.name}"

    def count_objects(self, k: Kernel, sc: ShrinkControl) -> int:
        """list_lru_shrink_count()."""
        return list_lru_count_one(self.lru, sc.memcg)

    def scan_objects(self, k: Kernel, sc: ShrinkControl) -> int:
        """list_lru_shrink_walk() isolating up to nr_to_scan unused objects, then kill them:
        their frees are queued behind a grace period."""
        isolated = list_lru_walk_one(k, self.lru, sc.memcg, sc.nr_to_scan)
        sc.nr_scanned = sc.nr_to_scan
        if isolated:
            batch = _DisposeBatch(self.lru.cache, isolated)
            k.vmscan.pending_frees += len(isolated)
            k.vmscan.nr_reclaimed_objects += len(isolated)
            call_rcu(k, batch.rcu, _free_dispose_batch)
        return len(isolated)


def _free_dispose_batch(k: Kernel, head: RcuHead) -> None:
    """__d_free() / i_callback(): kmem_cache_free() each object (in RCU-callback context)."""
    from memcgsim.mm.slub import kmem_cache_free, kmem_cache_free_bulk

    batch = head._kowner
    assert isinstance(batch, _DisposeBatch)
    if k.vmscan.bulk_frees:
        kmem_cache_free_bulk(k, batch.cache, np.asarray(batch.idxs, dtype=np.int64))
    else:
        for idx in batch.idxs:
            kmem_cache_free(k, batch.cache, idx)
    k.vmscan.pending_frees -= len(batch.idxs)


class VmscanGlobals:
    """Registered shrinkers and reclaim statistics."""

    def __init__(self) -> None:
        #: shrinker_list
        self.shrinkers: list[Shrinker] = []
        #: reclaimed objects whose free waits for a grace period
        self.pending_frees = 0
        #: free the objects of a dispose list with kmem_cache_free_bulk()
        self.bulk_frees = False
        self.nr_reclaimed_objects = 0
        self.nr_memcg_reclaims = 0
        self.nr_drop_slab = 0


def vmscan_init(k: Kernel) -> None:
    """Install memcg reclaim (try_charge's hook) and the shrinker list."""
    k.vmscan = VmscanGlobals()
    k.memcg.reclaim = try_to_free_mem_cgroup_pages


def register_shrinker(k: Kernel, shrinker: Shrinker) -> None:
    """register_shrinker()."""
    k.vmscan.shrinkers.append(shrinker)


def do_shrink_slab(k: Kernel, sc: ShrinkControl, shrinker: Shrinker, priority: int) -> int:
    """do_shrink_slab(): scan (freeable >> priority) * 4 / seeks objects, at most twice the
    freeable count, in batches of SHRINK_BATCH; returns the objects freed."""
    freeable = shrinker.count_objects(k, sc)
    if freeable == 0:
        return 0
    delta = (freeable >> priority) * 4 // shrinker.seeks
    total_scan = min(delta, freeable * 2)
    freed = 0
    while total_scan >= SHRINK_BATCH or total_scan >= freeable:
        nr_to_scan = min(SHRINK_BATCH, total_scan)
        if nr_to_scan <= 0:
            break
        sc.nr_to_scan = nr_to_scan
        sc.nr_scanned = nr_to_scan
        ret = shrinker.scan_objects(k, sc)
        freed += ret
        total_scan -= sc.nr_scanned
        if ret == 0:
            break
    return freed


def shrink_slab(k: Kernel, gfp: int, memcg: MemCgroup | None, priority: int) -> int:
    """shrink_slab() / shrink_slab_memcg(): run every shrinker for ``memcg`` (memcg-aware
    ones only for a non-root memcg)."""
    root = memcg is None or memcg is k.memcg.root_mem_cgroup
    freed = 0
    for shrinker in k.vmscan.shrinkers:
        if not root and not shrinker.memcg_aware:
            continue
        sc = ShrinkControl(gfp, None if root else memcg)
        freed += do_shrink_slab(k, sc, shrinker, priority)
    return freed


def try_to_free_mem_cgroup_pages(k: Kernel, memcg: MemCgroup, nr_pages: int, gfp: int) -> int:
    """try_to_free_mem_cgroup_pages(): reclaim from ``memcg``'s subtree (mem_cgroup_iter),
    priority DEF_PRIORITY down to 0, until max(nr_pages, SWAP_CLUSTER_MAX) pages came back;
    returns the pages memcg's counter dropped by."""
    if not gfp & Gfp.DIRECT_RECLAIM:
        return 0
    k.vmscan.nr_memcg_reclaims += 1
    nr_to_reclaim = max(nr_pages, SWAP_CLUSTER_MAX)
    before = page_counter_read(memcg.memory)
    reclaimed = 0
    for priority in range(DEF_PRIORITY, -1, -1):
        freed = 0
        for m in _css_descendants_pre(memcg):
            freed += shrink_slab(k, gfp, m, priority)
        if freed:
            rcu_barrier(k)
            drain_all_stock(k, memcg)
            reclaimed = max(0, before - page_counter_read(memcg.memory))
            if reclaimed >= nr_to_reclaim:
                break
    k.trace("memcg_reclaim", _path(memcg), f"want={nr_to_reclaim}", f"got={reclaimed}")
    return reclaimed


def mem_cgroup_handle_over_high(k: Kernel) -> None:
    """mem_cgroup_handle_over_high(): on return to user space, reclaim what the current
    task's charges put over memory.high (reclaim_high, for the memcg and its ancestors)."""
    t = k.current
    if t is None or not t.memcg_nr_pages_over_high:
        return
    nr_pages = t.memcg_nr_pages_over_high
    memcg = get_mem_cgroup_from_current(k)
    m: MemCgroup | None = memcg
    while m is not None:
        if page_counter_read(m.memory) > m.high:
            memcg_memory_event(k, m, MemcgEvent.MEMCG_HIGH)
            try_to_free_mem_cgroup_pages(k, m, nr_pages, GFP_KERNEL)
        m = parent_mem_cgroup(m)
    css_put(k, memcg)
    t.memcg_nr_pages_over_high = 0


def memcg_set_max(k: Kernel, memcg: MemCgroup, nr_pages: int | None) -> None:
    """memory_max_write(): set memory.max (None: "max"), then reclaim until usage fits, at
    most MAX_RECLAIM_RETRIES passes; an OOM event if it still does not."""
    k.access(memcg.memory, "max", AccessKind.WRITE)
    memcg.memory.max = PAGE_COUNTER_MAX if nr_pages is None else nr_pages
    for _ in range(MAX_RECLAIM_RETRIES):
        usage = page_counter_read(memcg.memory)
        if usage <= memcg.memory.max:
            return
        drain_all_stock(k, memcg)
        if not try_to_free_mem_cgroup_pages(k, memcg, usage - memcg.memory.max, GFP_KERNEL):
            break
    if page_counter_read(memcg.memory) > memcg.memory.max:
        memcg_memory_event(k, memcg, MemcgEvent.MEMCG_OOM)


def memcg_set_high(k: Kernel, memcg: MemCgroup, nr_pages: int | None) -> None:
    """memory_high_write(): set memory.high (None: "max") and reclaim the excess once."""
    memcg.high = PAGE_COUNTER_MAX if nr_pages is None else nr_pages
    usage = page_counter_read(memcg.memory)
    if usage > memcg.high:
        try_to_free_mem_cgroup_pages(k, memcg, usage - memcg.high, GFP_KERNEL)


def drop_slab(k: Kernel) -> int:
    """drop_slab() (echo 2 > drop_caches): shrink every memcg's slab at priority 0 (which
    scans everything) until a pass frees no more than 10 objects; returns objects freed."""
    k.vmscan.nr_drop_slab += 1
    total = 0
    while True:
        freed = 0
        for memcg in all_memcgs(k):
            freed += shrink_slab(k, GFP_KERNEL, memcg, 0)
        total += freed
        if freed <= 10:
            break
    return total


def drop_caches(k: Kernel, level: int) -> int:
    """drop_caches_sysctl_handler(): 1 drops the page cache (the model has none), 2 slab,
    3 both; returns the slab objects freed (their memory returns after a grace period)."""
    if level not in (1, 2, 3):
        raise ValueError(f"drop_caches takes 1, 2 or 3, not {level}")
    return drop_slab(k) if level & 2 else 0


def _path(memcg: MemCgroup) -> str:
    from memcgsim.mm.memcontrol import _memcg_path

    return _memcg_path(memcg)
