"""objcg: the seed as merged in 5.9 (``struct obj_cgroup``), with the merge's refinements.

Per-cpu object stock with ``nr_charged_bytes``, the css_tryget loop in
get_mem_cgroup_from_objcg(), and memcg_reparent_objcgs() killing the objcg after the splice
(:mod:`memcgsim.mm.objcg`).  Each kernel operation is a method, so that a mutant can replace
one of them for one Kernel.  5.9 also stopped flushing slab vmstats at kmem offline (the 5.3
double-count fixed in 5.4), so this design runs with that fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memcgsim.designs.base import KmemDesign
from memcgsim.mm import objcg as objcg_mod
from memcgsim.mm.memcontrol import MemcgStat
from memcgsim.mm.objcg import ObjCgroup

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.objects import KObject
    from memcgsim.kernel.percpu_ref import PercpuRef
    from memcgsim.mm.memcontrol import MemCgroup

__all__ = ["ObjcgDesign"]


def _stat_item(obj: KObject) -> MemcgStat:
    if getattr(obj, "reclaimable", False):
        return MemcgStat.NR_SLAB_RECLAIMABLE
    return MemcgStat.NR_SLAB_UNRECLAIMABLE


class ObjcgDesign(KmemDesign):
    """objcg: "mm: memcg: introduce obj_cgroup" and the 5.9 slab controller built on it."""

    name = "objcg"
    summary = "objects hold an obj_cgroup reference; per-cpu byte stock; offline repoints objcgs"

    def attach(self, k: Kernel) -> None:
        objcg_mod.objcg_init_stocks(k)
        # "mm: memcg/slab: fix percpu slab vmstats flushing" (5.4): no flush at kmem offline.
        k.memcg.flush_slab_vmstats_at_offline = False
        k.memcg.extra_css_refs_map.append(objcg_mod.objcg_css_refs)
        k.memcg.extra_charged_bytes_map.append(
            lambda k: objcg_mod.objcg_charged_bytes(k, self.objcg_object_bytes(k)))
        k.quiescent_checks.append(lambda k: objcg_mod.check_objcg_refs(k, self.objcg_refs(k)))

    # -- what holds objcg references and bytes, for the checkers --------------------------
    def objcg_refs(self, k: Kernel) -> dict[int, int]:
        """References objects hold on objcgs, by id(objcg)."""
        out: dict[int, int] = {}
        for obj in k.heap.live.values():
            o = getattr(obj, "objcg", None)
            if isinstance(o, ObjCgroup) and getattr(obj, "_kaccounted", False):
                out[id(o)] = out.get(id(o), 0) + 1
        return out

    def objcg_object_bytes(self, k: Kernel) -> dict[int, int]:
        """Bytes of live objects charged through each objcg, by id(objcg)."""
        out: dict[int, int] = {}
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
        return objcg_mod.memcg_online_objcg(k, memcg)

    def offline_kmem(self, k: Kernel, memcg: MemCgroup, parent: MemCgroup) -> None:
        self.memcg_reparent_objcgs(k, memcg, parent)

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
