"""page-pinning: kmem accounting before 5.3 (4.x to 5.2, mm/memcontrol.c, mm/slab_common.c).

Each memcg gets its own copy of every cache it allocates from ("dentry(12:foo)"), so a slab
page holds one memcg's objects only.  A new slab page is charged to the copy's memcg and
keeps the css reference per page that try_charge took (``page->mem_cgroup``): while a single
object of a removed cgroup lives, its page pins the memcg, which stays dying.  Offline only
deactivates the copies (``memcg_deactivate_kmem_caches``: no new allocations, empty slabs
freed at once); they are destroyed with the memcg in css_free.  list_lru items still move to
the parent at offline, so reclaim from above can free the objects and finally the memcg.

Model simplification: a copy is created synchronously at its first allocation; the kernel
creates it from a work item and serves the allocations in between from the root cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from memcgsim.cgroup.cgroup import css_put, css_put_many
from memcgsim.designs.base import KmemDesign, Objs, ReparentWork
from memcgsim.designs.common import (
    SlabBackedKmalloc,
    cache_vmstat_idx,
    memcg_cache_name,
    root_caches,
)
from memcgsim.kernel.list import list_add, list_del, list_for_each_entry
from memcgsim.kernel.locking import mutex_lock, mutex_unlock
from memcgsim.kernel.rcu import call_rcu
from memcgsim.kernel.task import AccessKind
from memcgsim.kernel.violations import ViolationKind
from memcgsim.mm.memcontrol import (
    MemCgroup,
    _memcg_path,
    get_mem_cgroup_from_current,
    memcg_kmem_bypass,
    mod_memcg_state,
    try_charge,
)
from memcgsim.mm.page_counter import page_counter_uncharge
from memcgsim.mm.slab_common import KmemCache, kmem_cache_create, owner_handle
from memcgsim.mm.slub import (
    kmem_cache_shrink,
    kmem_cache_shutdown,
    slab_accounted,
    slab_kmem_cache_release,
)

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.rcu import RcuHead

__all__ = ["PagePinningDesign"]


class PagePinningDesign(SlabBackedKmalloc, KmemDesign):
    """page-pinning: per-memcg caches whose slab pages hold css references (4.x)."""

    name = "page-pinning"
    summary = "per-memcg cache copies; every slab page charged to and pinning its memcg"

    def attach(self, k: Kernel) -> None:
        k.memcg.extra_css_refs_map.append(self._page_refs)
        k.memcg.extra_charged_bytes_map.append(self._page_bytes)

    # -- kernel functions ---------------------------------------------------------------
    def memcg_create_kmem_cache(self, k: Kernel, memcg: MemCgroup, root: KmemCache
                                ) -> KmemCache:
        """memcg_create_kmem_cache() (4.19): a copy of ``root`` for memcg, linked on
        memcg->kmem_caches and published in root's memcg_caches[kmemcg_id]."""
        g = k.slab
        mutex_lock(k, g.slab_mutex)
        idx = memcg.kmemcg_id
        c = root.memcg_params.memcg_caches.get(idx)
        if c is None:
            c = kmem_cache_create(k, root.spec, root=root, name=memcg_cache_name(root, memcg))
            c.memcg_params.memcg = memcg
            list_add(k, c.memcg_params.kmem_caches_node, memcg.kmem_caches)
            k.access(root, "memcg_params.memcg_caches", AccessKind.WRITE)
            root.memcg_params.memcg_caches[idx] = c
            k.trace("memcg_create_kmem_cache", c.name)
        mutex_unlock(k, g.slab_mutex)
        return c

    def memcg_kmem_get_cache(self, k: Kernel, s: KmemCache) -> tuple[KmemCache, Any]:
        """memcg_kmem_get_cache() (4.19): the current memcg's copy of ``s`` (created on first
        use), with a css reference held until memcg_kmem_put_cache()."""
        memcg = get_mem_cgroup_from_current(k)
        kmemcg_id = k.load(memcg, "kmemcg_id")
        if kmemcg_id < 0:
            css_put(k, memcg)
            return s, None
        k.access(s, "memcg_params.memcg_caches", AccessKind.READ)
        c = s.memcg_params.memcg_caches.get(kmemcg_id)
        if c is None:
            c = self.memcg_create_kmem_cache(k, memcg, s)
        return c, memcg

    def memcg_deactivate_kmem_caches(self, k: Kernel, memcg: MemCgroup) -> int:
        """memcg_deactivate_kmem_caches() (4.19): for each root cache, deactivate memcg's copy
        (after a grace period it is shrunk with min_partial 0) and unpublish it."""
        g = k.slab
        idx = memcg.kmemcg_id
        n = 0
        mutex_lock(k, g.slab_mutex)
        for s in root_caches(k):
            c = s.memcg_params.memcg_caches.get(idx)
            if c is None:
                continue
            self.kmemcg_cache_deactivate(k, c)
            del s.memcg_params.memcg_caches[idx]
            n += 1
        mutex_unlock(k, g.slab_mutex)
        return n

    def kmemcg_cache_deactivate(self, k: Kernel, c: KmemCache) -> None:
        """__kmemcg_cache_deactivate() (SLUB): no cpu partials, no empty slabs kept; shrink
        after a sched-RCU grace period (slab_deactivate_memcg_cache_rcu_sched)."""
        c.min_partial = 0
        c.memcg_params.dying = True
        call_rcu(k, c.memcg_params.rcu_head, _shrink_after_rcu)

    def memcg_destroy_kmem_caches(self, k: Kernel, memcg: MemCgroup) -> None:
        """memcg_destroy_kmem_caches() (4.19, from css_free): shut down every copy of the
        memcg; none can still have objects, since their pages pinned the memcg."""
        g = k.slab
        mutex_lock(k, g.slab_mutex)
        for c in list(list_for_each_entry(k, memcg.kmem_caches)):
            list_del(k, c.memcg_params.kmem_caches_node)
            if not kmem_cache_shutdown(k, c):
                k.report(ViolationKind.BUG, f"kmem_cache_destroy {c.name}: Slab cache still "
                                            "has objects")
                continue
            slab_kmem_cache_release(k, c)
        mutex_unlock(k, g.slab_mutex)

    # -- the design interface -------------------------------------------------------------
    def offline_kmem(self, k: Kernel, memcg: MemCgroup, parent: MemCgroup) -> None:
        lock = k.slab.slab_mutex if hasattr(k, "slab") else None
        steps0 = k.steps
        held0 = lock.held_steps if lock is not None else 0
        n = self.memcg_deactivate_kmem_caches(k, memcg) if lock is not None else 0
        self.reparent_work.append(ReparentWork(
            _memcg_path(memcg), caches=n, steps=k.steps - steps0,
            locked_steps=(lock.held_steps - held0) if lock is not None else 0))

    def free_kmem(self, k: Kernel, memcg: MemCgroup) -> None:
        if hasattr(k, "slab"):
            self.memcg_destroy_kmem_caches(k, memcg)

    def slab_pre_alloc_hook(self, k: Kernel, s: KmemCache, nr_objects: int, gfp: int
                            ) -> tuple[KmemCache | None, Any]:
        if not slab_accounted(s, gfp) or memcg_kmem_bypass(k):
            return s, None
        return self.memcg_kmem_get_cache(k, s)

    def slab_post_alloc_hook(self, k: Kernel, s: KmemCache, ctx: Any, idxs: Objs) -> None:
        """slab_post_alloc_hook(): memcg_kmem_put_cache() drops the lookup reference."""
        if ctx is not None:
            css_put(k, ctx)

    def slab_alloc_failed(self, k: Kernel, s: KmemCache, ctx: Any, nr_objects: int) -> None:
        pass  # the post hook, which runs for the objects that were had, puts the reference

    def charge_slab_page(self, k: Kernel, s: KmemCache, page: int, gfp: int) -> bool:
        """memcg_charge_slab() (4.19): memcg_kmem_charge_memcg(page, gfp, order,
        s->memcg_params.memcg): the page keeps the css references try_charge took."""
        if s.is_root_cache:
            return True
        memcg = s.memcg_params.memcg
        assert memcg is not None
        nr_pages = 1 << s.order
        if try_charge(k, memcg, gfp, nr_pages, False):
            return False
        s.arena.charge_mv[page] = owner_handle(k, memcg)  # page->mem_cgroup = memcg
        mod_memcg_state(k, memcg, cache_vmstat_idx(s), s.page_bytes)
        return True

    def uncharge_slab_page(self, k: Kernel, s: KmemCache, page: int) -> None:
        """memcg_uncharge_slab() -> memcg_kmem_uncharge(page, order) (4.19)."""
        h = s.arena.charge_mv[page]
        if h <= 0:
            return
        memcg: MemCgroup = k.slab.owners[h]
        nr_pages = 1 << s.order
        s.arena.charge_mv[page] = 0
        mod_memcg_state(k, memcg, cache_vmstat_idx(s), -s.page_bytes)
        page_counter_uncharge(k, memcg.memory, nr_pages)
        css_put_many(k, memcg, nr_pages)

    def mem_cgroup_from_obj(self, k: Kernel, s: KmemCache, idx: int) -> MemCgroup | None:
        """mem_cgroup_from_kmem() (4.19): page->mem_cgroup of the object's page."""
        h = s.arena.charge_mv[idx // s.objects]
        return k.slab.owners[h] if h > 0 else None

    # -- reports and checkers ---------------------------------------------------------------
    def _page_totals(self, k: Kernel) -> dict[int, tuple[MemCgroup, int, int]]:
        """id(memcg) -> (memcg, css references its pages hold, bytes its pages charge)."""
        out: dict[int, tuple[MemCgroup, int, int]] = {}
        for s in root_caches(k):
            a = s.arena
            used = a.page_charge[a.page_state != 0]
            held = used[used > 0]
            if not len(held):
                continue
            hs, counts = np.unique(held, return_counts=True)
            for h, n in zip(hs.tolist(), counts.tolist(), strict=True):
                m = k.slab.owners[h]
                _, r, b = out.get(id(m), (m, 0, 0))
                out[id(m)] = (m, r + n * (1 << s.order), b + n * s.page_bytes)
        return out

    def _page_refs(self, k: Kernel) -> dict[int, int]:
        return {key: r for key, (_, r, _) in self._page_totals(k).items()}

    def _page_bytes(self, k: Kernel) -> dict[int, int]:
        return {key: b for key, (_, _, b) in self._page_totals(k).items()}

    def pinned_bytes(self, k: Kernel, dying: set[int]) -> int:
        return sum(b for key, (_, _, b) in self._page_totals(k).items() if key in dying)

    def dying_caches(self, k: Kernel) -> int:
        g = getattr(k, "slab", None)
        if g is None:
            return 0
        return sum(1 for c in g.caches if c.memcg_params.dying and not c.destroyed)


def _shrink_after_rcu(k: Kernel, head: RcuHead) -> None:
    """kmemcg_deactivate_rcufn() -> kmem_cache_shrink() of the deactivated copy.

    The kernel defers it to a work item holding slab_mutex; the model shrinks in the RCU
    callback (shrinking takes no sleeping lock here).
    """
    c = head._kowner
    assert isinstance(c, KmemCache)
    if not c.destroyed:
        kmem_cache_shrink(k, c)
