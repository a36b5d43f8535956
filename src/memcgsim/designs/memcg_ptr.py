"""The seed's design: objects reference a mem_cgroup_ptr; offline repoints the ptrs.

Each operation is a method that calls the seed's function of the same name in
:mod:`memcgsim.mm.memcontrol` (and the RFC's slab hooks in :mod:`memcgsim.mm.slab`), so that a
mutant can replace exactly one of them for one Kernel.

On slab caches this is the RFC series ("The new slab memory controller", Sep 2019): two sets
of caches, the root caches and one shared copy of each for every accounted allocation
(:func:`memcgsim.designs.common.accounted_cache`); a per-slab-page ownership vector with one
mem_cgroup_ptr reference per object slot ("[PATCH RFC 07/14]"); byte-granular charges through
the RFC 01/14 byte stock, uncharged through ``ptr->memcg`` wherever reparenting has pointed it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from memcgsim.cgroup.cgroup import css_put
from memcgsim.designs.base import KmemDesign, Objs, ReparentWork
from memcgsim.designs.common import (
    accounted_cache,
    cache_vmstat_idx,
    clear_owners,
    slab_owner_counts,
)
from memcgsim.kernel.percpu_ref import percpu_ref_get_many, percpu_ref_put_many
from memcgsim.kernel.rcu import rcu_read_lock, rcu_read_unlock
from memcgsim.kernel.task import AccessKind
from memcgsim.mm import memcontrol, slab
from memcgsim.mm.memcontrol import (
    __memcg_kmem_uncharge_subpage,
    mem_cgroup_ptr_get,
    mem_cgroup_ptr_put,
    mod_memcg_state,
)
from memcgsim.mm.slab_common import owner_handle
from memcgsim.mm.slub import slab_accounted

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.objects import KObject
    from memcgsim.kernel.percpu_ref import PercpuRef
    from memcgsim.mm.memcontrol import MemCgroup, MemCgroupPtr
    from memcgsim.mm.slab_common import KmemCache

__all__ = ["MemcgPtrDesign"]

_W = AccessKind.WRITE
#: names starting with two underscores are mangled inside a class body: an alias
memcg_kmem_uncharge_subpage = __memcg_kmem_uncharge_subpage


class MemcgPtrDesign(KmemDesign):
    """memcg-ptr: "[PATCH RFC 02/14] mm: memcg: introduce mem_cgroup_ptr" and its series."""

    name = "memcg-ptr"
    summary = "objects hold a mem_cgroup_ptr reference; offline repoints O(ptrs) ptrs"

    def attach(self, k: Kernel) -> None:
        k.memcg.extra_ptr_refs_map.append(self._slab_ptr_refs)
        k.memcg.extra_charged_bytes_map.append(self._slab_charged_bytes)

    # -- the seed's operations (mutants override these) --------------------------------
    def mem_cgroup_get_kmem_ptr(self, k: Kernel, memcg: MemCgroup) -> MemCgroupPtr | None:
        return memcontrol.mem_cgroup_get_kmem_ptr(k, memcg)

    def memcg_ptr_release(self, k: Kernel, ref: PercpuRef) -> None:
        memcontrol.memcg_ptr_release(k, ref)

    def memcg_init_kmem_memcg_ptr(self, k: Kernel, memcg: MemCgroup) -> int:
        return memcontrol.memcg_init_kmem_memcg_ptr(k, memcg)

    def memcg_reparent_kmem_memcg_ptr(self, k: Kernel, memcg: MemCgroup,
                                      parent: MemCgroup) -> None:
        memcontrol.memcg_reparent_kmem_memcg_ptr(k, memcg, parent)

    def get_mem_cgroup_from_ptr(self, k: Kernel, ptr: MemCgroupPtr) -> MemCgroup:
        """Take a referenced memcg from a ptr (the css_tryget loop; explorer scenarios)."""
        return memcontrol.get_mem_cgroup_from_ptr(k, ptr)

    # -- the design interface -------------------------------------------------------------
    def online_kmem(self, k: Kernel, memcg: MemCgroup) -> int:
        return self.memcg_init_kmem_memcg_ptr(k, memcg)

    def offline_kmem(self, k: Kernel, memcg: MemCgroup, parent: MemCgroup) -> None:
        lock = k.cgroup.css_set_lock
        steps0, held0, nlog = k.steps, lock.held_steps, len(k.memcg.reparent_log)
        self.memcg_reparent_kmem_memcg_ptr(k, memcg, parent)
        nr = sum(k.memcg.reparent_log[nlog:])
        self.reparent_work.append(ReparentWork(
            memcontrol._memcg_path(memcg), ptrs=nr, steps=k.steps - steps0,
            locked_steps=lock.held_steps - held0))

    def charge_obj(self, k: Kernel, obj: KObject, nr_bytes: int, gfp: int) -> bool:
        ok, memcg = slab.slab_pre_alloc_hook(k, nr_bytes, gfp)
        if not ok:
            return False
        if memcg is not None:
            slab.memcg_slab_post_alloc_hook(k, memcg, obj, nr_bytes)
        return True

    def uncharge_obj(self, k: Kernel, obj: KObject) -> None:
        slab.memcg_slab_free_hook(k, obj)

    # -- slab caches ------------------------------------------------------------------------
    def slab_pre_alloc_hook(self, k: Kernel, s: KmemCache, nr_objects: int, gfp: int
                            ) -> tuple[KmemCache | None, Any]:
        """slab_pre_alloc_hook() (RFC 10/14, reconstructed): charge the bytes of
        ``nr_objects`` objects to the current memcg; accounted objects come from the shared
        accounted copy of the cache, the root's and kthreads' from the root cache."""
        if not slab_accounted(s, gfp):
            return s, None
        ok, memcg = slab.slab_pre_alloc_hook(k, nr_objects * s.size, gfp)
        if not ok:
            return None, None
        if memcg is None:
            return s, None
        return accounted_cache(k, s), memcg

    def slab_post_alloc_hook(self, k: Kernel, s: KmemCache, ctx: Any, idxs: Objs) -> None:
        """memcg_slab_post_alloc_hook() (RFC 07/14): one reference on the memcg's kmem ptr
        per object, stored in the page's ownership vector."""
        memcg: MemCgroup | None = ctx
        if memcg is None:
            return
        n = len(idxs)
        ptr = self.mem_cgroup_get_kmem_ptr(k, memcg)
        h = owner_handle(k, ptr) if ptr is not None else 0
        a = s.arena
        if n == 1:
            mem_cgroup_ptr_get(k, ptr)
            k.access(s, "page->mem_cgroup_vec", _W)
            a.owner_mv[idxs[0]] = h
        elif ptr is not None:
            percpu_ref_get_many(k, ptr.refcnt, n)
            k.access(s, "page->mem_cgroup_vec", _W)
            a.owner[np.asarray(idxs)] = h
        mod_memcg_state(k, memcg, cache_vmstat_idx(s), n * s.size)
        mem_cgroup_ptr_put(k, ptr)
        css_put(k, memcg)

    def slab_alloc_failed(self, k: Kernel, s: KmemCache, ctx: Any, nr_objects: int) -> None:
        memcg: MemCgroup | None = ctx
        if memcg is not None:
            memcg_kmem_uncharge_subpage(k, memcg, nr_objects * s.size)

    def slab_free_hook(self, k: Kernel, s: KmemCache, idxs: Objs) -> None:
        """memcg_slab_free_hook() (RFC 07/10): clear the vector entry, uncharge through
        ptr->memcg under RCU, drop the object's ptr reference."""
        owners = k.slab.owners
        for h, n in clear_owners(k, s, idxs, "page->mem_cgroup_vec"):
            self._uncharge(k, s, owners[h], n)

    def _uncharge(self, k: Kernel, s: KmemCache, ptr: MemCgroupPtr, n: int) -> None:
        nr_bytes = n * s.size
        rcu_read_lock(k)
        memcg = k.load(ptr, "memcg")
        memcg_kmem_uncharge_subpage(k, memcg, nr_bytes)
        mod_memcg_state(k, memcg, cache_vmstat_idx(s), -nr_bytes)
        rcu_read_unlock(k)
        if n == 1:
            mem_cgroup_ptr_put(k, ptr)
        else:
            percpu_ref_put_many(k, ptr.refcnt, n)

    def mem_cgroup_from_obj(self, k: Kernel, s: KmemCache, idx: int) -> MemCgroup | None:
        """mem_cgroup_from_obj(): ptr->memcg of the object's vector entry (None: root)."""
        h = s.arena.owner_mv[idx]
        if h <= 0:
            return None
        memcg: MemCgroup = k.load(k.slab.owners[h], "memcg")
        return memcg

    # -- checkers ---------------------------------------------------------------------------
    def _slab_ptr_refs(self, k: Kernel) -> dict[int, int]:
        owners = k.slab.owners if hasattr(k, "slab") else []
        return {id(owners[h]): n for h, (n, _) in slab_owner_counts(k).items()}

    def _slab_charged_bytes(self, k: Kernel) -> dict[int, int]:
        out: dict[int, int] = {}
        if not hasattr(k, "slab"):
            return out
        for h, (_, nr_bytes) in slab_owner_counts(k).items():
            m = k.slab.owners[h].memcg
            if m is not None:
                out[id(m)] = out.get(id(m), 0) + nr_bytes
        return out

    def pinned_bytes(self, k: Kernel, dying: set[int]) -> int:
        return sum(v for key, v in self._slab_charged_bytes(k).items() if key in dying)

