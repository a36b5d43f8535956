"""Pieces several designs share: the cache sets, ownership tallies, per-memcg cache copies."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from memcgsim.kernel.task import AccessKind
from memcgsim.mm.memcontrol import MemcgStat
from memcgsim.mm.slab_common import KmemCache, kmem_cache_create

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from memcgsim.designs.base import Objs
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.objects import KObject
    from memcgsim.mm.memcontrol import MemCgroup

__all__ = [
    "SlabBackedKmalloc",
    "accounted_cache",
    "cache_vmstat_idx",
    "clear_owners",
    "memcg_cache_name",
    "owner_runs",
    "root_caches",
    "slab_owner_counts",
]


#: enum members as module constants (AccessKind.X is a slow metaclass lookup)
_RMW = AccessKind.RMW


def cache_vmstat_idx(s: KmemCache) -> MemcgStat:
    """cache_vmstat_idx(): NR_SLAB_RECLAIMABLE for SLAB_RECLAIM_ACCOUNT caches."""
    return _RECLAIMABLE if s.reclaimable else _UNRECLAIMABLE


_RECLAIMABLE = MemcgStat.NR_SLAB_RECLAIMABLE
_UNRECLAIMABLE = MemcgStat.NR_SLAB_UNRECLAIMABLE


def root_caches(k: Kernel) -> list[KmemCache]:
    """slab_root_caches: every root cache created so far."""
    g = getattr(k, "slab", None)
    if g is None:
        return []
    return [s for s in g.caches if s.is_root_cache and not s.destroyed]


def accounted_cache(k: Kernel, s: KmemCache) -> KmemCache:
    """The RFC's second cache set ("one for all other [than root] cgroups", cover letter of
    "The new slab memory controller"): one shared copy of root cache ``s`` for every
    accounted allocation, created on first use."""
    c = s.memcg_params.accounted
    if c is None:
        c = kmem_cache_create(k, s.spec, root=s, name=f"{s.name}(accounted)")
        s.memcg_params.accounted = c
    return c


def memcg_cache_name(s: KmemCache, memcg: MemCgroup) -> str:
    """The name memcg_create_kmem_cache() gives a copy: "%s(%llu:%s)" (serial nr, name)."""
    cg = memcg.cgroup
    return f"{s.name}({memcg.serial_nr}:{cg.name if cg is not None else '?'})"


def slab_owner_counts(k: Kernel) -> dict[int, tuple[int, int]]:
    """For every ownership handle some live slab object holds: (objects, object bytes at
    s->size), summed over every cache."""
    out: dict[int, tuple[int, int]] = {}
    for s in root_caches(k):
        owner = s.arena.owner
        held = owner[owner > 0]
        if not len(held):
            continue
        hs, counts = np.unique(held, return_counts=True)
        for h, n in zip(hs.tolist(), counts.tolist(), strict=True):
            c, b = out.get(h, (0, 0))
            out[h] = (c + n, b + n * s.size)
    return out


def owner_runs(hs: NDArray[np.int32]) -> list[tuple[int, int]]:
    """(handle, count) of the owned entries of ``hs`` grouped by handle, in order of first
    appearance (how bulk hooks batch one reference/charge operation per owner)."""
    hs = hs[hs > 0]
    if not len(hs):
        return []
    uniq, first, counts = np.unique(hs, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    return list(zip(uniq[order].tolist(), counts[order].tolist(), strict=True))


def clear_owners(k: Kernel, s: KmemCache, idxs: Objs, vector: str) -> list[tuple[int, int]]:
    """The free hooks' common first half: clear the freed objects' ownership entries (one
    access of the slab page's vector, named ``vector`` as the kernel names it) and return
    (owner handle, count) runs for the entries that were set."""
    a = s.arena
    if len(idxs) == 1:
        idx = idxs[0]
        k.access(s, vector, _RMW)
        h = int(a.owner_mv[idx])
        if h <= 0:
            return []
        a.owner_mv[idx] = 0
        return [(h, 1)]
    arr = np.asarray(idxs)
    k.access(s, vector, _RMW)
    hs = a.owner[arr]
    a.owner[arr] = 0
    return owner_runs(hs)


class SlabBackedKmalloc:
    """charge_obj/uncharge_obj for designs whose accounting lives in the slab pages: an
    accounted kmalloc() of a model object takes a slot of the kmalloc cache of its size (as
    kmalloc() does: kmalloc_slab()), so the design charges it as it charges any slab object;
    kfree() frees the slot.  Sizes above the largest kmalloc cache (8 KiB) would come from the
    page allocator; the model does not account those."""

    def charge_obj(self, k: Kernel, obj: KObject, nr_bytes: int, gfp: int) -> bool:
        from memcgsim.mm.slab_common import KMALLOC_SIZES, kmalloc_index, kmem_cache_by_name
        from memcgsim.mm.slub import kmem_cache_alloc

        if nr_bytes > KMALLOC_SIZES[-1]:
            return True
        s = kmem_cache_by_name(k, kmalloc_index(nr_bytes))
        idx = kmem_cache_alloc(k, s, gfp)
        if idx < 0:
            return False
        obj._kslab_slot = (s, idx)  # type: ignore[attr-defined]
        obj._kaccounted = True  # type: ignore[attr-defined]
        return True

    def uncharge_obj(self, k: Kernel, obj: KObject) -> None:
        from memcgsim.mm.slub import kmem_cache_free

        slot = getattr(obj, "_kslab_slot", None)
        obj._kaccounted = False  # type: ignore[attr-defined]
        if slot is None:
            return
        obj._kslab_slot = None  # type: ignore[attr-defined]
        kmem_cache_free(k, slot[0], slot[1])
