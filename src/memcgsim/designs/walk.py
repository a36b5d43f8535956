"""walk: the strawman the seed's cover letter argues against.

Objects point straight at their memcg and each holds a css reference on it (one word per
object slot, like the seed's vector, but no indirection).  Charging is byte-granular as in
the RFC (``__memcg_kmem_charge_subpage``), from the same two cache sets as memcg-ptr.  To let
a removed memcg go, offline must find and repoint every object still charged to it, holding
css_set_lock, and move that many css references to the parent: work proportional to the
objects, where the seed does work proportional to its ptrs ("On reparenting, only one
mem_cgroup_ptr->memcg pointer has to be changed, instead of walking over all accounted
objects").

The walk visits the ownership vectors of every page of every shared accounted cache, as a
kernel implementation would have to (there is no per-memcg list of objects).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from memcgsim.cgroup.cgroup import css_get_many, css_put, css_put_many
from memcgsim.designs.base import KmemDesign, Objs, ReparentWork
from memcgsim.designs.common import (
    SlabBackedKmalloc,
    accounted_cache,
    cache_vmstat_idx,
    clear_owners,
    root_caches,
    slab_owner_counts,
)
from memcgsim.kernel.locking import spin_lock_irq, spin_unlock_irq
from memcgsim.kernel.task import AccessKind
from memcgsim.mm import slab
from memcgsim.mm.memcontrol import (
    MemCgroup,
    __memcg_kmem_uncharge_subpage,
    _memcg_path,
    mod_memcg_state,
)
from memcgsim.mm.slab_common import owner_handle
from memcgsim.mm.slub import slab_accounted

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.mm.slab_common import KmemCache

__all__ = ["WalkDesign"]

_W = AccessKind.WRITE
_RMW = AccessKind.RMW
#: names starting with two underscores are mangled inside a class body: an alias
memcg_kmem_uncharge_subpage = __memcg_kmem_uncharge_subpage


class WalkDesign(SlabBackedKmalloc, KmemDesign):
    """walk: objects reference the memcg directly; offline repoints every object."""

    name = "walk"
    summary = "objects hold a css reference on their memcg; offline walks and repoints them"

    def attach(self, k: Kernel) -> None:
        k.memcg.extra_css_refs_map.append(self._object_refs)
        k.memcg.extra_charged_bytes_map.append(self._object_bytes)

    def memcg_reparent_objects(self, k: Kernel, memcg: MemCgroup, parent: MemCgroup) -> int:
        """Repoint every slab object charged to ``memcg`` at ``parent`` under css_set_lock,
        then move that many css references; returns the objects repointed."""
        g = k.cgroup
        nr = 0
        spin_lock_irq(k, g.css_set_lock)
        h = memcg.__dict__.get("_kslab_handle")
        if h is not None:
            hp = owner_handle(k, parent)
            for s in root_caches(k):
                c = s.memcg_params.accounted
                if c is None:
                    continue
                owner = s.arena.owner
                pos = np.flatnonzero(owner == h)
                if not len(pos):
                    continue
                if k.preemptive:
                    for idx in pos.tolist():
                        k.access(c, f"page->memcg_vec[{idx}]", _RMW)  # xchg(&obj->memcg)
                        s.arena.owner_mv[idx] = hp
                else:
                    # One step per object repointed, as the loop above takes.
                    k.steps += len(pos)
                    owner[pos] = hp
                nr += len(pos)
        spin_unlock_irq(k, g.css_set_lock)
        if nr:
            css_get_many(k, parent, nr)
            css_put_many(k, memcg, nr)
        return nr

    # -- the design interface -------------------------------------------------------------
    def offline_kmem(self, k: Kernel, memcg: MemCgroup, parent: MemCgroup) -> None:
        lock = k.cgroup.css_set_lock
        steps0, held0 = k.steps, lock.held_steps
        nr = self.memcg_reparent_objects(k, memcg, parent)
        self.reparent_work.append(ReparentWork(
            _memcg_path(memcg), objects=nr, steps=k.steps - steps0,
            locked_steps=lock.held_steps - held0))

    def slab_pre_alloc_hook(self, k: Kernel, s: KmemCache, nr_objects: int, gfp: int
                            ) -> tuple[KmemCache | None, Any]:
        if not slab_accounted(s, gfp):
            return s, None
        ok, memcg = slab.slab_pre_alloc_hook(k, nr_objects * s.size, gfp)
        if not ok:
            return None, None
        if memcg is None:
            return s, None
        return accounted_cache(k, s), memcg

    def slab_post_alloc_hook(self, k: Kernel, s: KmemCache, ctx: Any, idxs: Objs) -> None:
        """Each object takes a css reference on the memcg and points at it."""
        memcg: MemCgroup | None = ctx
        if memcg is None:
            return
        n = len(idxs)
        if n:
            css_get_many(k, memcg, n)
            h = owner_handle(k, memcg)
            k.access(s, "page->memcg_vec", _W)
            if n == 1:
                s.arena.owner_mv[idxs[0]] = h
            else:
                s.arena.owner[np.asarray(idxs)] = h
            mod_memcg_state(k, memcg, cache_vmstat_idx(s), n * s.size)
        css_put(k, memcg)

    def slab_alloc_failed(self, k: Kernel, s: KmemCache, ctx: Any, nr_objects: int) -> None:
        memcg: MemCgroup | None = ctx
        if memcg is not None:
            memcg_kmem_uncharge_subpage(k, memcg, nr_objects * s.size)

    def slab_free_hook(self, k: Kernel, s: KmemCache, idxs: Objs) -> None:
        owners = k.slab.owners
        for h, n in clear_owners(k, s, idxs, "page->memcg_vec"):
            self._uncharge(k, s, owners[h], n)

    def _uncharge(self, k: Kernel, s: KmemCache, memcg: MemCgroup, n: int) -> None:
        nr_bytes = n * s.size
        memcg_kmem_uncharge_subpage(k, memcg, nr_bytes)
        mod_memcg_state(k, memcg, cache_vmstat_idx(s), -nr_bytes)
        css_put_many(k, memcg, n)

    def mem_cgroup_from_obj(self, k: Kernel, s: KmemCache, idx: int) -> MemCgroup | None:
        h = s.arena.owner_mv[idx]
        return k.slab.owners[h] if h > 0 else None

    # -- checkers ---------------------------------------------------------------------------
    def _object_refs(self, k: Kernel) -> dict[int, int]:
        if not hasattr(k, "slab"):
            return {}
        return {id(k.slab.owners[h]): n for h, (n, _) in slab_owner_counts(k).items()}

    def _object_bytes(self, k: Kernel) -> dict[int, int]:
        if not hasattr(k, "slab"):
            return {}
        return {id(k.slab.owners[h]): b for h, (_, b) in slab_owner_counts(k).items()}

    def pinned_bytes(self, k: Kernel, dying: set[int]) -> int:
        return sum(b for key, b in self._object_bytes(k).items() if key in dying)
