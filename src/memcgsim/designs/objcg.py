"""objcg: the seed as merged in 5.9 (``struct obj_cgroup``), with the merge's refinements.

Per-cpu object stock with ``nr_charged_bytes``, the css_tryget loop in
get_mem_cgroup_from_objcg(), and memcg_reparent_objcgs() killing the objcg after the splice
(:mod:`memcgsim.mm.objcg`).  Each kernel operation is a method, so that a mutant can replace
one of them for one Kernel.  5.9 also stopped flushing slab vmstats at kmem offline (the 5.3
double-count fixed in 5.4), so this design runs with that fix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from memcgsim.designs.base import KmemDesign, Objs, ReparentWork
from memcgsim.designs.common import (
    cache_vmstat_idx,
    clear_owners,
    slab_owner_counts,
)
from memcgsim.kernel.heap import GFP_KERNEL
from memcgsim.kernel.percpu_ref import percpu_ref_get_many, percpu_ref_put_many
from memcgsim.kernel.rcu import rcu_read_lock, rcu_read_unlock
from memcgsim.kernel.task import AccessKind
from memcgsim.mm import objcg as objcg_mod
from memcgsim.mm.memcontrol import MemCgroup as MemCgroupCls
from memcgsim.mm.memcontrol import MemcgStat, _memcg_path, mod_memcg_state
from memcgsim.mm.objcg import ObjCgroup
from memcgsim.mm.slab_common import owner_handle
from memcgsim.mm.slub import slab_accounted

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.objects import KObject
    from memcgsim.kernel.percpu_ref import PercpuRef
    from memcgsim.mm.memcontrol import MemCgroup
    from memcgsim.mm.slab_common import KmemCache

__all__ = ["ObjcgDesign", "obj_full_size"]

_W = AccessKind.WRITE


#: per-cpu bytes of one memcg's statistics, per CPU: what "percpu" grows by for each child
#: cgroup (7008 bytes on a 2-CPU 6.1 kernel: reference/linux-6.1-cgroupfs.md)
MEMCG_PERCPU_BYTES_PER_CPU = 3504


def memcg_percpu_bytes(k: Kernel) -> int:
    """Bytes of per-cpu memory a memcg's statistics take on this machine."""
    return MEMCG_PERCPU_BYTES_PER_CPU * k.nr_cpus


def _parent_of_new(memcg: MemCgroup) -> MemCgroup | None:
    """The parent of a memcg in css_alloc (its css is not linked yet; its counter is)."""
    pc = memcg.memory.parent
    if pc is None:
        return None
    owner = pc._kowner
    return owner if isinstance(owner, MemCgroupCls) else None


def _percpu_charges(k: Kernel) -> list[tuple[MemCgroup, ObjCgroup]]:
    from memcgsim.mm.memcontrol import all_memcgs

    out = []
    for m in all_memcgs(k):
        o = getattr(m, "_kpercpu_objcg", None)
        if o is not None:
            out.append((m, o))
    return out


def obj_full_size(s: KmemCache) -> int:
    """obj_full_size() (mm/slab.h, 5.9): the object plus its obj_cgroup pointer in the
    page's vector, which is what an object is charged for."""
    return s.size + 8


def _stat_item(obj: KObject) -> MemcgStat:
    if getattr(obj, "reclaimable", False):
        return MemcgStat.NR_SLAB_RECLAIMABLE
    return MemcgStat.NR_SLAB_UNRECLAIMABLE


class ObjcgDesign(KmemDesign):
    """objcg: "mm: memcg: introduce obj_cgroup" and the 5.9 slab controller built on it."""

    name = "objcg"
    summary = "objects hold an obj_cgroup reference; per-cpu byte stock; offline repoints objcgs"
    accounts_percpu = True

    def attach(self, k: Kernel) -> None:
        objcg_mod.objcg_init_stocks(k)
        # "mm: memcg/slab: fix percpu slab vmstats flushing" (5.4): no flush at kmem offline.
        k.memcg.flush_slab_vmstats_at_offline = False
        k.memcg.extra_css_refs_map.append(objcg_mod.objcg_css_refs)
        k.memcg.extra_charged_bytes_map.append(
            lambda k: objcg_mod.objcg_charged_bytes(k, self.objcg_object_bytes(k)))

    def checks(self) -> list[Callable[[Kernel], None]]:
        return [lambda k: objcg_mod.check_objcg_refs(k, self.objcg_refs(k))]

    # -- what holds objcg references and bytes, for the checkers --------------------------
    def objcg_refs(self, k: Kernel) -> dict[int, int]:
        """References objects hold on objcgs, by id(objcg)."""
        out: dict[int, int] = {}
        for _m, pc in _percpu_charges(k):
            out[id(pc)] = out.get(id(pc), 0) + 1
        if hasattr(k, "slab"):
            for h, (n, _) in slab_owner_counts(k).items():
                key = id(k.slab.owners[h])
                out[key] = out.get(key, 0) + n
        for obj in k.heap.live.values():
            o = getattr(obj, "objcg", None)
            if isinstance(o, ObjCgroup) and getattr(obj, "_kaccounted", False):
                out[id(o)] = out.get(id(o), 0) + 1
        return out

    def objcg_object_bytes(self, k: Kernel) -> dict[int, int]:
        """Bytes of live objects charged through each objcg, by id(objcg)."""
        out: dict[int, int] = {}
        for _, pc in _percpu_charges(k):
            out[id(pc)] = out.get(id(pc), 0) + memcg_percpu_bytes(k)
        if hasattr(k, "slab"):
            for h, (n, nr_bytes) in slab_owner_counts(k).items():
                key = id(k.slab.owners[h])
                out[key] = out.get(key, 0) + nr_bytes + 8 * n
        for obj in k.heap.live.values():
            o = getattr(obj, "objcg", None)
            if isinstance(o, ObjCgroup) and getattr(obj, "_kaccounted", False):
                out[id(o)] = out.get(id(o), 0) + obj.alloc_size()
        return out

    # -- the kernel operations (mutants override these) -------------------------------------
    def get_mem_cgroup_from_objcg(self, k: Kernel, objcg: ObjCgroup) -> MemCgroup:
        return objcg_mod.get_mem_cgroup_from_objcg(k, objcg)

    def obj_cgroup_release(self, k: Kernel, ref: PercpuRef) -> None:
        objcg_mod.obj_cgroup_release(k, ref)

    def memcg_reparent_objcgs(self, k: Kernel, memcg: MemCgroup, parent: MemCgroup) -> int:
        return objcg_mod.memcg_reparent_objcgs(k, memcg, parent)

    # -- the design interface -------------------------------------------------------------
    def online_kmem(self, k: Kernel, memcg: MemCgroup) -> int:
        ret = objcg_mod.memcg_online_objcg(k, memcg)
        if not ret:
            self.pcpu_memcg_charge(k, memcg)
        return ret

    def free_kmem(self, k: Kernel, memcg: MemCgroup) -> None:
        self.pcpu_memcg_uncharge(k, memcg)

    # -- percpu accounting (5.9: "mm: memcg/percpu: account percpu memory to memory cgroups",
    #    "mm: memcg: charge memcg percpu memory to the parent cgroup") -----------------------
    def pcpu_memcg_charge(self, k: Kernel, memcg: MemCgroup) -> None:
        """pcpu_memcg_pre/post_alloc_hook() for the memcg's own per-cpu statistics, which
        mem_cgroup_css_alloc() allocates under set_active_memcg(parent): charge them to the
        parent's objcg (none for children of the root) and count them as its "percpu".

        Model simplification: charged when the memcg's kmem goes online, right after
        mem_cgroup_alloc() in the kernel's order; a failed charge is ignored (the kernel would
        fail the allocation and mkdir).
        """
        parent = _parent_of_new(memcg)
        t = k.current
        if parent is None or t is None:
            return
        old = t.active_memcg
        t.active_memcg = parent  # set_active_memcg(parent)
        objcg = objcg_mod.get_obj_cgroup_from_current(k)
        t.active_memcg = old
        if objcg is None:
            return
        size = memcg_percpu_bytes(k)
        if objcg_mod.obj_cgroup_charge(k, objcg, GFP_KERNEL, size):
            objcg_mod.obj_cgroup_put(k, objcg)
            return
        memcg._kpercpu_objcg = objcg  # chunk->obj_cgroups[off], with its reference
        rcu_read_lock(k)
        mod_memcg_state(k, objcg_mod.obj_cgroup_memcg(k, objcg), MemcgStat.MEMCG_PERCPU_B, size)
        rcu_read_unlock(k)

    def pcpu_memcg_uncharge(self, k: Kernel, memcg: MemCgroup) -> None:
        """pcpu_memcg_free_hook(): uncharge through the objcg (wherever it points now)."""
        objcg = getattr(memcg, "_kpercpu_objcg", None)
        if objcg is None:
            return
        memcg._kpercpu_objcg = None
        size = memcg_percpu_bytes(k)
        objcg_mod.obj_cgroup_uncharge(k, objcg, size)
        rcu_read_lock(k)
        mod_memcg_state(k, objcg_mod.obj_cgroup_memcg(k, objcg), MemcgStat.MEMCG_PERCPU_B, -size)
        rcu_read_unlock(k)
        objcg_mod.obj_cgroup_put(k, objcg)

    def offline_kmem(self, k: Kernel, memcg: MemCgroup, parent: MemCgroup) -> None:
        lock = k.cgroup.css_set_lock
        steps0, held0 = k.steps, lock.held_steps
        nr = self.memcg_reparent_objcgs(k, memcg, parent)
        self.reparent_work.append(ReparentWork(
            _memcg_path(memcg), ptrs=nr, steps=k.steps - steps0,
            locked_steps=lock.held_steps - held0))

    def charge_obj(self, k: Kernel, obj: KObject, nr_bytes: int, gfp: int) -> bool:
        """memcg_slab_pre_alloc_hook() + memcg_slab_post_alloc_hook() (5.10) for one object."""
        objcg = objcg_mod.get_obj_cgroup_from_current(k)
        if objcg is None:
            return True
        if objcg_mod.obj_cgroup_charge(k, objcg, gfp, nr_bytes):
            objcg_mod.obj_cgroup_put(k, objcg)
            return False
        objcg_mod.obj_cgroup_get(k, objcg)
        k.store(obj, "objcg", objcg)
        obj._kaccounted = True  # type: ignore[attr-defined]
        objcg_mod.mod_objcg_state(k, objcg, _stat_item(obj), nr_bytes)
        objcg_mod.obj_cgroup_put(k, objcg)
        return True

    def uncharge_obj(self, k: Kernel, obj: KObject) -> None:
        """memcg_slab_free_hook() (5.10) for one object."""
        objcg = k.load(obj, "objcg")
        if objcg is None:
            return
        k.store(obj, "objcg", None)
        obj._kaccounted = False  # type: ignore[attr-defined]
        nr_bytes = obj.alloc_size()
        objcg_mod.obj_cgroup_uncharge(k, objcg, nr_bytes)
        objcg_mod.mod_objcg_state(k, objcg, _stat_item(obj), -nr_bytes)
        objcg_mod.obj_cgroup_put(k, objcg)

    # -- slab caches (5.9/5.10: one set of caches for every allocation) ---------------------
    def slab_pre_alloc_hook(self, k: Kernel, s: KmemCache, nr_objects: int, gfp: int
                            ) -> tuple[KmemCache | None, Any]:
        """memcg_slab_pre_alloc_hook() (5.10): charge the objects' full size to the current
        objcg; the objects come from the one shared cache ``s``."""
        if not slab_accounted(s, gfp):
            return s, None
        objcg = objcg_mod.get_obj_cgroup_from_current(k)
        if objcg is None:
            return s, None
        if objcg_mod.obj_cgroup_charge(k, objcg, gfp, nr_objects * obj_full_size(s)):
            objcg_mod.obj_cgroup_put(k, objcg)
            return None, None
        return s, objcg

    def slab_post_alloc_hook(self, k: Kernel, s: KmemCache, ctx: Any, idxs: Objs) -> None:
        """memcg_slab_post_alloc_hook() (5.10): an objcg reference per object in the page's
        obj_cgroups vector, the slab vmstat in bytes, then drop the lookup reference."""
        objcg: ObjCgroup | None = ctx
        if objcg is None:
            return
        n = len(idxs)
        h = owner_handle(k, objcg)
        a = s.arena
        if n == 1:
            objcg_mod.obj_cgroup_get(k, objcg)
            k.access(s, "page_obj_cgroups(page)", _W)
            a.owner_mv[idxs[0]] = h
        elif n:
            percpu_ref_get_many(k, objcg.refcnt, n)
            k.access(s, "page_obj_cgroups(page)", _W)
            a.owner[np.asarray(idxs)] = h
        if n:
            objcg_mod.mod_objcg_state(k, objcg, cache_vmstat_idx(s), n * obj_full_size(s))
        objcg_mod.obj_cgroup_put(k, objcg)

    def slab_alloc_failed(self, k: Kernel, s: KmemCache, ctx: Any, nr_objects: int) -> None:
        objcg: ObjCgroup | None = ctx
        if objcg is not None:
            objcg_mod.obj_cgroup_uncharge(k, objcg, nr_objects * obj_full_size(s))

    def slab_free_hook(self, k: Kernel, s: KmemCache, idxs: Objs) -> None:
        """memcg_slab_free_hook() (5.10): clear the vector entry, give the bytes back to the
        object stock, unaccount the vmstat, drop the object's objcg reference."""
        owners = k.slab.owners
        for h, n in clear_owners(k, s, idxs, "page_obj_cgroups(page)"):
            self._uncharge(k, s, owners[h], n)

    def _uncharge(self, k: Kernel, s: KmemCache, objcg: ObjCgroup, n: int) -> None:
        nr_bytes = n * obj_full_size(s)
        objcg_mod.obj_cgroup_uncharge(k, objcg, nr_bytes)
        objcg_mod.mod_objcg_state(k, objcg, cache_vmstat_idx(s), -nr_bytes)
        if n == 1:
            objcg_mod.obj_cgroup_put(k, objcg)
        else:
            percpu_ref_put_many(k, objcg.refcnt, n)

    def mem_cgroup_from_obj(self, k: Kernel, s: KmemCache, idx: int) -> MemCgroup | None:
        """mem_cgroup_from_obj() (5.9): obj_cgroup_memcg() of the object's vector entry."""
        h = s.arena.owner_mv[idx]
        if h <= 0:
            return None
        return objcg_mod.obj_cgroup_memcg(k, k.slab.owners[h])

    def pinned_bytes(self, k: Kernel, dying: set[int]) -> int:
        return sum(v for key, v in objcg_mod.objcg_charged_bytes(
            k, self.objcg_object_bytes(k)).items() if key in dying)
