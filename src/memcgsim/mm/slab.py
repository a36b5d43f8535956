"""Accounted kernel allocations: the slab hooks of the RFC series, per object.

Until slab caches exist, an accounted object is a kmalloc() with __GFP_ACCOUNT of a model
object.  The hooks follow "[PATCH RFC 07/14] mm: memcg/slab: save memcg ownership data for
non-root slab objects" and "[PATCH RFC 10/14] mm: memcg/slab: charge individual slab objects
instead of pages": the allocation charges its bytes to the current task's memcg (subpage
charging), takes a reference on the mem_cgroup_ptr mem_cgroup_get_kmem_ptr() returns and
stores it as the object's ownership entry; the free uncharges through ``ptr->memcg``, wherever
reparenting has pointed it since, and drops the reference.

Model simplification: the ownership entry lives on the object (``obj.memcg_ptr``) rather than
in a per-slab-page vector indexed by obj_to_index().
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from memcgsim.cgroup.cgroup import css_put
from memcgsim.kernel.objects import KObject
from memcgsim.kernel.rcu import rcu_read_lock, rcu_read_unlock
from memcgsim.mm.memcontrol import (
    MemCgroup,
    MemcgStat,
    __memcg_kmem_charge_subpage,
    __memcg_kmem_uncharge_subpage,
    get_mem_cgroup_from_current,
    mem_cgroup_get_kmem_ptr,
    mem_cgroup_is_root,
    mem_cgroup_ptr_get,
    mem_cgroup_ptr_put,
    memcg_kmem_bypass,
    mod_memcg_state,
)

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel

__all__ = [
    "DesignAccounting",
    "KmallocObject",
    "memcg_slab_free_hook",
    "memcg_slab_post_alloc_hook",
    "slab_pre_alloc_hook",
]


class KmallocObject(KObject):
    """An object from a kmalloc-N cache: ``size`` bytes of kernel memory."""

    ktype = "kmalloc"
    #: counted as NR_SLAB_RECLAIMABLE rather than NR_SLAB_UNRECLAIMABLE
    reclaimable: ClassVar[bool] = False

    def __init__(self, size: int = 64) -> None:
        super().__init__()
        if size <= 0:
            raise ValueError(f"object size must be positive, not {size}")
        self.size = size
        #: the ownership entry: page->mem_cgroup_vec[obj_to_index()] in the RFC
        self.memcg_ptr: Any = None
        #: the same under the objcg design: page_obj_cgroups(page)[obj_to_index()] (5.9+)
        self.objcg: Any = None

    def alloc_size(self) -> int:
        return self.size

    def _kdescr(self) -> str:
        return f"kmalloc-{self.size}#{self._koid}"


def _stat_item(obj: KObject) -> MemcgStat:
    if getattr(obj, "reclaimable", False):
        return MemcgStat.NR_SLAB_RECLAIMABLE
    return MemcgStat.NR_SLAB_UNRECLAIMABLE


def slab_pre_alloc_hook(k: Kernel, nr_bytes: int, gfp: int) -> tuple[bool, MemCgroup | None]:
    """slab_pre_alloc_hook(): charge ``nr_bytes`` to the current memcg.

    Returns (ok, memcg): memcg is referenced when the charge succeeded and must be accounted
    (None for the root, kthreads and interrupts, which are not charged).
    """
    if memcg_kmem_bypass(k):
        return True, None
    memcg = get_mem_cgroup_from_current(k)
    if mem_cgroup_is_root(k, memcg):
        css_put(k, memcg)
        return True, None
    if __memcg_kmem_charge_subpage(k, memcg, nr_bytes, gfp):
        css_put(k, memcg)
        return False, None
    return True, memcg


def memcg_slab_post_alloc_hook(k: Kernel, memcg: MemCgroup, obj: KObject, nr_bytes: int) -> None:
    """memcg_slab_post_alloc_hook(): record a referenced kmem ptr as the object's owner."""
    get_kmem_ptr = getattr(k.design, "mem_cgroup_get_kmem_ptr", mem_cgroup_get_kmem_ptr)
    ptr = get_kmem_ptr(k, memcg)
    mem_cgroup_ptr_get(k, ptr)
    k.store(obj, "memcg_ptr", ptr)
    obj._kaccounted = True  # type: ignore[attr-defined]
    mod_memcg_state(k, memcg, _stat_item(obj), nr_bytes)
    mem_cgroup_ptr_put(k, ptr)
    css_put(k, memcg)


def memcg_slab_free_hook(k: Kernel, obj: KObject) -> None:
    """memcg_slab_free_hook(): uncharge through the ptr's current memcg, drop the ptr ref."""
    ptr = k.load(obj, "memcg_ptr")
    k.store(obj, "memcg_ptr", None)
    obj._kaccounted = False  # type: ignore[attr-defined]
    if ptr is None:
        return
    nr_bytes = obj.alloc_size()
    rcu_read_lock(k)
    memcg = k.load(ptr, "memcg")
    __memcg_kmem_uncharge_subpage(k, memcg, nr_bytes)
    mod_memcg_state(k, memcg, _stat_item(obj), -nr_bytes)
    rcu_read_unlock(k)
    mem_cgroup_ptr_put(k, ptr)


class DesignAccounting:
    """The heap's __GFP_ACCOUNT hooks: whatever the kernel's design does."""

    def charge(self, k: Kernel, obj: KObject, nr_bytes: int, gfp: int) -> bool:
        return k.design.charge_obj(k, obj, obj.alloc_size(), gfp)

    def uncharge(self, k: Kernel, obj: KObject) -> None:
        k.design.uncharge_obj(k, obj)
