"""cache-reparent: kmem accounting in 5.3 (mm/memcontrol.c, mm/slab_common.c, mm/slab.h).

Per-memcg cache copies as before 5.3, but "mm: memcg/slab: reparent memcg kmem_caches on
cgroup removal" and "mm: rework non-root kmem_cache lifecycle management" (5.3) stop slab
pages from pinning the memcg: ``memcg_charge_slab`` moves the css references try_charge took
onto the copy's own percpu refcount, and at offline ``memcg_deactivate_kmem_caches`` points
every copy on memcg->kmem_caches (its own and those inherited from removed children) at the
parent, moving their css references with them.  The memcg is freed; its copies live on,
deactivated, until their last slab page goes, and are then shut down from a work item.

Model simplification: a copy is created synchronously at its first allocation (the kernel
creates it from a work item and serves the allocations in between from the root cache).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from memcgsim.cgroup.cgroup import css_get, css_get_many, css_put, css_put_many, css_tryget_online
from memcgsim.designs.base import KmemDesign, Objs, ReparentWork
from memcgsim.designs.common import (
    SlabBackedKmalloc,
    cache_vmstat_idx,
    memcg_cache_name,
    root_caches,
)
from memcgsim.kernel.list import (
    list_add,
    list_del,
    list_empty,
    list_for_each_entry,
    list_splice_init,
)
from memcgsim.kernel.locking import mutex_lock, mutex_unlock
from memcgsim.kernel.percpu_ref import (
    percpu_ref_exit,
    percpu_ref_get_many,
    percpu_ref_init,
    percpu_ref_kill,
    percpu_ref_put,
    percpu_ref_put_many,
    percpu_ref_read,
    percpu_ref_tryget,
)
from memcgsim.kernel.rcu import call_rcu, rcu_read_lock, rcu_read_unlock
from memcgsim.kernel.task import AccessKind
from memcgsim.kernel.violations import ViolationKind
from memcgsim.kernel.workqueue import Workqueue, WorkStruct, alloc_workqueue, queue_work
from memcgsim.mm.memcontrol import (
    MemCgroup,
    _memcg_path,
    mem_cgroup_from_task,
    mem_cgroup_is_root,
    memcg_kmem_bypass,
    mod_memcg_state,
    parent_mem_cgroup,
    try_charge,
)
from memcgsim.mm.page_counter import page_counter_uncharge
from memcgsim.mm.slab_common import KmemCache, kmem_cache_create
from memcgsim.mm.slub import (
    kmem_cache_shrink,
    kmem_cache_shutdown,
    slab_accounted,
    slab_kmem_cache_release,
)

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.percpu_ref import PercpuRef
    from memcgsim.kernel.rcu import RcuHead

__all__ = ["CacheReparentDesign"]


def _cache_of_ref(ref: PercpuRef) -> KmemCache:
    c = ref._kowner
    assert isinstance(c, KmemCache)
    return c


class CacheReparentDesign(SlabBackedKmalloc, KmemDesign):
    """cache-reparent: per-memcg caches reparented at offline, destroyed when empty (5.3)."""

    name = "cache-reparent"
    summary = "per-memcg cache copies; offline reparents the copies, which die when empty"

    def __init__(self) -> None:
        super().__init__()
        self.wq: Workqueue | None = None

    def attach(self, k: Kernel) -> None:
        # memcg_kmem_cache_wq = alloc_workqueue("memcg_kmem_cache", 0, 1)
        self.wq = alloc_workqueue(k, "memcg_kmem_cache")
        k.memcg.extra_css_refs_map.append(self._cache_refs)
        k.memcg.extra_charged_bytes_map.append(self._cache_bytes)

    def checks(self) -> list[Callable[[Kernel], None]]:
        return [self.check_cache_refs]

    # -- kernel functions -----------------------------------------------------------------
    def memcg_create_kmem_cache(self, k: Kernel, memcg: MemCgroup, root: KmemCache
                                ) -> KmemCache | None:
        """memcg_create_kmem_cache() (5.3): a copy of ``root`` whose memcg_params.refcnt
        (release: kmemcg_queue_cache_shutdown) counts its pages; memcg_link_cache() takes a
        css reference on memcg and links the copy on memcg->kmem_caches."""
        g = k.slab
        mutex_lock(k, g.slab_mutex)
        idx = memcg.kmemcg_id
        c = root.memcg_params.memcg_caches.get(idx)
        if c is None:
            c = kmem_cache_create(k, root.spec, root=root, name=memcg_cache_name(root, memcg))
            if percpu_ref_init(k, c.memcg_params.refcnt, kmemcg_queue_cache_shutdown, 0):
                c.destroyed = True
                mutex_unlock(k, g.slab_mutex)
                return None
            # memcg_link_cache()
            css_get(k, memcg)
            c.memcg_params.memcg = memcg
            list_add(k, c.memcg_params.kmem_caches_node, memcg.kmem_caches)
            k.access(root, "memcg_params.memcg_caches", AccessKind.WRITE)
            root.memcg_params.memcg_caches[idx] = c
            k.trace("memcg_create_kmem_cache", c.name)
        mutex_unlock(k, g.slab_mutex)
        return c

    def memcg_kmem_get_cache(self, k: Kernel, s: KmemCache) -> KmemCache:
        """memcg_kmem_get_cache() (5.3): the current memcg's copy of ``s`` if its refcount can
        be taken (percpu_ref_tryget), else the root cache."""
        t = k.current
        assert t is not None
        c: KmemCache | None = None
        rcu_read_lock(k)
        memcg = t.active_memcg or mem_cgroup_from_task(k, t)
        if memcg is not None and not mem_cgroup_is_root(k, memcg):
            kmemcg_id = k.load(memcg, "kmemcg_id")
            if kmemcg_id >= 0:
                k.access(s, "memcg_params.memcg_caches", AccessKind.READ)
                c = s.memcg_params.memcg_caches.get(kmemcg_id)
        rcu_read_unlock(k)
        if c is None and memcg is not None and not mem_cgroup_is_root(k, memcg) \
                and memcg.kmemcg_id >= 0:
            c = self.memcg_create_kmem_cache(k, memcg, s)
        if c is not None and percpu_ref_tryget(k, c.memcg_params.refcnt):
            return c
        return s

    def memcg_kmem_put_cache(self, k: Kernel, s: KmemCache) -> None:
        """memcg_kmem_put_cache() (5.3)."""
        if not s.is_root_cache:
            percpu_ref_put(k, s.memcg_params.refcnt)

    def kmemcg_cache_deactivate(self, k: Kernel, c: KmemCache) -> None:
        """kmemcg_cache_deactivate() (5.3): stop keeping empty slabs, mark it deactivated,
        and after a grace period shrink it and kill its refcount (from a work item)."""
        c.min_partial = 0
        c.flags |= c.flags.SLAB_DEACTIVATED
        c.memcg_params.dying = True
        c.memcg_params.work_fn = kmemcg_cache_deactivate_after_rcu
        call_rcu(k, c.memcg_params.rcu_head, self.kmemcg_schedule_work_after_rcu)

    def kmemcg_schedule_work_after_rcu(self, k: Kernel, head: RcuHead) -> None:
        """kmemcg_schedule_work_after_rcu(): queue memcg_params.work on memcg_kmem_cache_wq."""
        c = head._kowner
        assert isinstance(c, KmemCache) and self.wq is not None
        c.memcg_params.work.func = kmemcg_after_rcu_workfn
        queue_work(k, self.wq, c.memcg_params.work)

    def memcg_deactivate_kmem_caches(self, k: Kernel, memcg: MemCgroup, parent: MemCgroup
                                     ) -> int:
        """memcg_deactivate_kmem_caches() (5.3): deactivate and unpublish memcg's copies, then
        point every copy on memcg->kmem_caches at the parent and splice the list into the
        parent's, moving one css reference per copy.  Returns the copies reparented."""
        g = k.slab
        idx = memcg.kmemcg_id
        mutex_lock(k, g.slab_mutex)
        for s in root_caches(k):
            c = s.memcg_params.memcg_caches.get(idx)
            if c is None:
                continue
            self.kmemcg_cache_deactivate(k, c)
            k.access(s, "memcg_params.memcg_caches", AccessKind.WRITE)
            del s.memcg_params.memcg_caches[idx]
        nr_reparented = 0
        for c in list_for_each_entry(k, memcg.kmem_caches):
            k.access(c, "memcg_params.memcg", AccessKind.WRITE)  # WRITE_ONCE()
            c.memcg_params.memcg = parent
            css_put(k, memcg)
            nr_reparented += 1
        if nr_reparented:
            list_splice_init(k, memcg.kmem_caches, parent.kmem_caches)
            css_get_many(k, parent, nr_reparented)
        mutex_unlock(k, g.slab_mutex)
        return nr_reparented

    # -- the design interface -------------------------------------------------------------
    def offline_kmem(self, k: Kernel, memcg: MemCgroup, parent: MemCgroup) -> None:
        if not hasattr(k, "slab"):
            self.reparent_work.append(ReparentWork(_memcg_path(memcg)))
            return
        lock = k.slab.slab_mutex
        steps0, held0 = k.steps, lock.held_steps
        n = self.memcg_deactivate_kmem_caches(k, memcg, parent)
        self.reparent_work.append(ReparentWork(
            _memcg_path(memcg), caches=n, steps=k.steps - steps0,
            locked_steps=lock.held_steps - held0))

    def free_kmem(self, k: Kernel, memcg: MemCgroup) -> None:
        if not list_empty(k, memcg.kmem_caches):
            k.report(ViolationKind.BUG, f"memcg_free_kmem: {_memcg_path(memcg)} still has "
                                        "kmem caches")

    def slab_pre_alloc_hook(self, k: Kernel, s: KmemCache, nr_objects: int, gfp: int
                            ) -> tuple[KmemCache | None, Any]:
        if not slab_accounted(s, gfp) or memcg_kmem_bypass(k):
            return s, None
        c = self.memcg_kmem_get_cache(k, s)
        return c, None

    def slab_post_alloc_hook(self, k: Kernel, s: KmemCache, ctx: Any, idxs: Objs) -> None:
        self.memcg_kmem_put_cache(k, s)

    def charge_slab_page(self, k: Kernel, s: KmemCache, page: int, gfp: int) -> bool:
        """memcg_charge_slab() (5.3): charge the cache's memcg (or its nearest online
        ancestor), account the vmstat, and move try_charge's css references onto the cache's
        refcount (one per page)."""
        if s.is_root_cache:
            return True
        rcu_read_lock(k)
        k.access(s, "memcg_params.memcg", AccessKind.READ)
        memcg: MemCgroup | None = s.memcg_params.memcg
        while memcg is not None and not css_tryget_online(k, memcg):
            memcg = parent_mem_cgroup(memcg)
        rcu_read_unlock(k)
        if memcg is None:
            return False
        nr_pages = 1 << s.order
        ret = try_charge(k, memcg, gfp, nr_pages, False)
        if not ret:
            mod_memcg_state(k, memcg, cache_vmstat_idx(s), s.page_bytes)
            # transfer try_charge() page references to kmem_cache
            percpu_ref_get_many(k, s.memcg_params.refcnt, nr_pages)
            css_put_many(k, memcg, nr_pages)
        css_put(k, memcg)
        return not ret

    def uncharge_slab_page(self, k: Kernel, s: KmemCache, page: int) -> None:
        """memcg_uncharge_slab() (5.3): uncharge whatever memcg the cache points to now."""
        if s.is_root_cache:
            return
        nr_pages = 1 << s.order
        rcu_read_lock(k)
        k.access(s, "memcg_params.memcg", AccessKind.READ)
        memcg = s.memcg_params.memcg
        assert memcg is not None
        if not mem_cgroup_is_root(k, memcg):
            mod_memcg_state(k, memcg, cache_vmstat_idx(s), -s.page_bytes)
            page_counter_uncharge(k, memcg.memory, nr_pages)  # memcg_kmem_uncharge_memcg()
        rcu_read_unlock(k)
        percpu_ref_put_many(k, s.memcg_params.refcnt, nr_pages)

    def mem_cgroup_from_obj(self, k: Kernel, s: KmemCache, idx: int) -> MemCgroup | None:
        """memcg_from_slab_page() (5.3): the memcg of the page's cache, if a copy."""
        c = k.slab.caches[s.arena.cache_mv[idx // s.objects]]
        if c.is_root_cache:
            return None
        k.access(c, "memcg_params.memcg", AccessKind.READ)
        return c.memcg_params.memcg

    # -- reports and checkers ---------------------------------------------------------------
    def _copies(self, k: Kernel) -> list[KmemCache]:
        g = getattr(k, "slab", None)
        if g is None:
            return []
        return [c for c in g.caches if not c.is_root_cache and not c.destroyed
                and c.memcg_params.memcg is not None]

    def _cache_refs(self, k: Kernel) -> dict[int, int]:
        """Each linked copy holds one css reference on its memcg (memcg_link_cache)."""
        out: dict[int, int] = {}
        for c in self._copies(k):
            m = c.memcg_params.memcg
            out[id(m)] = out.get(id(m), 0) + 1
        return out

    def _cache_bytes(self, k: Kernel) -> dict[int, int]:
        out: dict[int, int] = {}
        for c in self._copies(k):
            m = c.memcg_params.memcg
            out[id(m)] = out.get(id(m), 0) + c.nr_slabs * c.page_bytes
        return out

    def check_cache_refs(self, k: Kernel) -> None:
        """At quiescence: a live copy's refcount is its pages' plus its initial reference
        until it is killed."""
        for c in self._copies(k):
            ref = c.memcg_params.refcnt
            if ref._kexited:
                continue
            expected = c.nr_slabs * (1 << c.order) + (0 if ref.flags & 2 else 1)
            actual = percpu_ref_read(ref)
            if actual != expected:
                k.report(ViolationKind.ACCOUNTING,
                         f"{c.name} memcg_params.refcnt is {actual}, but {expected} "
                         "references are held on it", obj=c, field="memcg_params.refcnt")

    def pinned_bytes(self, k: Kernel, dying: set[int]) -> int:
        return sum(c.nr_slabs * c.page_bytes for c in self._copies(k) if c.memcg_params.dying)

    def dying_caches(self, k: Kernel) -> int:
        return sum(1 for c in self._copies(k) if c.memcg_params.dying)


def kmemcg_after_rcu_workfn(k: Kernel, work: WorkStruct) -> None:
    """kmemcg_after_rcu_workfn(): run memcg_params.work_fn under slab_mutex."""
    c = work._kowner
    assert isinstance(c, KmemCache)
    fn = c.memcg_params.work_fn
    c.memcg_params.work_fn = None
    g = k.slab
    mutex_lock(k, g.slab_mutex)
    fn(k, c)
    mutex_unlock(k, g.slab_mutex)


def kmemcg_cache_deactivate_after_rcu(k: Kernel, c: KmemCache) -> None:
    """kmemcg_cache_deactivate_after_rcu() (5.3): shrink the copy, kill its refcount."""
    kmem_cache_shrink(k, c)
    percpu_ref_kill(k, c.memcg_params.refcnt)


def kmemcg_queue_cache_shutdown(k: Kernel, ref: PercpuRef) -> None:
    """kmemcg_queue_cache_shutdown(): the copy's refcount reached zero (its last page went):
    shut it down after a grace period, from the workqueue."""
    c = _cache_of_ref(ref)
    c.memcg_params.work_fn = kmemcg_cache_shutdown_after_rcu
    design = k.design
    assert isinstance(design, CacheReparentDesign)
    call_rcu(k, c.memcg_params.rcu_head, design.kmemcg_schedule_work_after_rcu)


def kmemcg_cache_shutdown_after_rcu(k: Kernel, c: KmemCache) -> None:
    """kmemcg_cache_shutdown_after_rcu() -> shutdown_cache(): destroy the empty copy;
    memcg_unlink_cache() unlinks it and drops its css reference on (now) the parent."""
    k.warn_on(not kmem_cache_shutdown(k, c), f"shutdown_cache({c.name}) with objects")
    c.destroyed = True
    list_del(k, c.memcg_params.kmem_caches_node)
    memcg = c.memcg_params.memcg
    if memcg is not None:
        css_put(k, memcg)
    percpu_ref_exit(k, c.memcg_params.refcnt)
    k.trace("kmemcg_cache_shutdown", c.name)
    slab_kmem_cache_release(k, c)

