"""The interface between the memory controller, the slab allocator and an accounting design.

memcontrol and the slab allocator call these methods at the points where the designs of
DESIGN.md §3 differ: bringing a memcg's kmem online (css_alloc), taking it offline
(css_offline: the reparenting) and freeing it (css_free); choosing the cache an accounted
allocation comes from and charging it (slab_pre_alloc_hook); recording who owns the new
objects (slab_post_alloc_hook); uncharging a freed object (memcg_slab_free_hook); charging
and uncharging whole slab pages (memcg_charge_slab / memcg_uncharge_slab); and telling which
memcg owns an object (mem_cgroup_from_kmem / mem_cgroup_from_obj, used by list_lru).  A
design object belongs to one Kernel (no global state); explorer mutants are subclasses
overriding one operation.

Slab objects are integers (slot indices in their cache's arena, :mod:`memcgsim.mm.slab_common`);
the bulk variants take numpy arrays of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy as np
    from numpy.typing import NDArray

    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.objects import KObject
    from memcgsim.mm.memcontrol import MemCgroup
    from memcgsim.mm.slab_common import KmemCache

__all__ = ["KmemDesign", "Objs", "ReparentWork"]

#: slab objects: one (a tuple) or many (an array of slot indices)
Objs: TypeAlias = "Sequence[int] | NDArray[np.int64]"


@dataclass
class ReparentWork:
    """What one memcg_offline_kmem() reparenting touched."""

    memcg: str
    #: mem_cgroup_ptrs / obj_cgroups repointed
    ptrs: int = 0
    #: objects repointed one by one (the walk design)
    objects: int = 0
    #: per-memcg cache copies deactivated and reparented
    caches: int = 0
    #: scheduling points the reparenting took
    steps: int = 0
    #: of those, scheduling points taken while holding css_set_lock or slab_mutex
    locked_steps: int = 0

    @property
    def touched(self) -> int:
        """ptrs + objects + caches: the items the reparenting had to visit."""
        return self.ptrs + self.objects + self.caches


class KmemDesign:
    """Base class: no kmem accounting at all (every object is the root's)."""

    #: the name ``--design`` selects
    name = "none"
    #: one line for reports
    summary = "kernel memory is not accounted"
    #: memory.stat percpu is charged (5.9's "mm: memcg/percpu: account percpu memory")
    accounts_percpu = False

    def __init__(self) -> None:
        #: one record per memcg_offline_kmem() (metrics)
        self.reparent_work: list[ReparentWork] = []

    def attach(self, k: Kernel) -> None:
        """Called once at boot, before the root cgroup exists."""

    def checks(self) -> list[Callable[[Kernel], None]]:
        """The design's own consistency checks, run at quiescence with memcontrol's."""
        return []

    # -- memcg lifecycle ------------------------------------------------------------------
    def online_kmem(self, k: Kernel, memcg: MemCgroup) -> int:
        """In memcg_online_kmem() after the kmemcg id is allocated: 0 or a negative errno."""
        return 0

    def offline_kmem(self, k: Kernel, memcg: MemCgroup, parent: MemCgroup) -> None:
        """In memcg_offline_kmem(), where 5.3 deactivates caches and the seed reparents."""

    def free_kmem(self, k: Kernel, memcg: MemCgroup) -> None:
        """In memcg_free_kmem() (css_free), after a kmem-online memcg went offline."""

    # -- accounted kmalloc of model objects (memcgsim.mm.slab.KmallocObject) ---------------
    def charge_obj(self, k: Kernel, obj: KObject, nr_bytes: int, gfp: int) -> bool:
        """slab_pre_alloc_hook() + slab_post_alloc_hook() for one accounted object."""
        return True

    def uncharge_obj(self, k: Kernel, obj: KObject) -> None:
        """The slab free hook of an accounted object."""

    # -- slab caches ------------------------------------------------------------------------
    def slab_pre_alloc_hook(self, k: Kernel, s: KmemCache, nr_objects: int, gfp: int
                            ) -> tuple[KmemCache | None, Any]:
        """Before allocating ``nr_objects`` from root cache ``s``: the cache to allocate
        from (a per-memcg copy, or ``s``) and a context for the post hook; (None, _) when
        the charge failed."""
        return s, None

    def slab_post_alloc_hook(self, k: Kernel, s: KmemCache, ctx: Any,
                             idxs: Objs) -> None:
        """After allocating objects ``idxs`` from ``s``: record their owner."""

    def slab_alloc_failed(self, k: Kernel, s: KmemCache, ctx: Any, nr_objects: int) -> None:
        """Undo slab_pre_alloc_hook() for objects that could not be allocated."""

    def slab_free_hook(self, k: Kernel, s: KmemCache, idxs: Objs) -> None:
        """Before objects ``idxs`` of ``s`` go back to their pages: uncharge them."""

    def charge_slab_page(self, k: Kernel, s: KmemCache, page: int, gfp: int) -> bool:
        """allocate_slab(): charge a new slab page of ``s`` (memcg_charge_slab); False if
        the charge failed."""
        return True

    def uncharge_slab_page(self, k: Kernel, s: KmemCache, page: int) -> None:
        """__free_slab(): uncharge a slab page of ``s`` (memcg_uncharge_slab)."""

    def mem_cgroup_from_obj(self, k: Kernel, s: KmemCache, idx: int) -> MemCgroup | None:
        """mem_cgroup_from_kmem() / mem_cgroup_from_obj(): the memcg charged for object
        ``idx`` of root cache ``s`` (None: the root)."""
        return None

    # -- reports ----------------------------------------------------------------------------
    def dying_caches(self, k: Kernel) -> int:
        """Per-memcg cache copies whose memcg went offline and that still exist."""
        return 0

    def pinned_bytes(self, k: Kernel, dying: set[int]) -> int:
        """Bytes charged to memcgs in ``dying`` (ids of dying memcgs) that they cannot give
        back until objects are freed."""
        return 0
