"""The seed's design: objects reference a mem_cgroup_ptr; offline repoints the ptrs.

Each operation is a method that calls the seed's function of the same name in
:mod:`memcgsim.mm.memcontrol` (and the RFC's slab hooks in :mod:`memcgsim.mm.slab`), so that a
mutant can replace exactly one of them for one Kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memcgsim.designs.base import KmemDesign
from memcgsim.mm import memcontrol, slab

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.objects import KObject
    from memcgsim.kernel.percpu_ref import PercpuRef
    from memcgsim.mm.memcontrol import MemCgroup, MemCgroupPtr

__all__ = ["MemcgPtrDesign"]


class MemcgPtrDesign(KmemDesign):
    """memcg-ptr: "[PATCH RFC 02/14] mm: memcg: introduce mem_cgroup_ptr" and its series."""

    name = "memcg-ptr"
    summary = "objects hold a mem_cgroup_ptr reference; offline repoints O(ptrs) ptrs"

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
        self.memcg_reparent_kmem_memcg_ptr(k, memcg, parent)

    def charge_obj(self, k: Kernel, obj: KObject, nr_bytes: int, gfp: int) -> bool:
        ok, memcg = slab.slab_pre_alloc_hook(k, nr_bytes, gfp)
        if not ok:
            return False
        if memcg is not None:
            slab.memcg_slab_post_alloc_hook(k, memcg, obj, nr_bytes)
        return True

    def uncharge_obj(self, k: Kernel, obj: KObject) -> None:
        slab.memcg_slab_free_hook(k, obj)
