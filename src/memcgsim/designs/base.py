"""The interface between the memory controller and a kernel-memory accounting design.

memcontrol and the slab hooks call these methods at the points where the designs of DESIGN.md
§3 differ: bringing a memcg's kmem online (css_alloc), taking it offline (css_offline: the
reparenting), and charging or uncharging an accounted object.  A design object belongs to
one Kernel (no global state); explorer mutants are subclasses overriding one operation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.objects import KObject
    from memcgsim.mm.memcontrol import MemCgroup

__all__ = ["KmemDesign"]


class KmemDesign:
    """Base class: no kmem accounting at all."""

    #: the name ``--design`` selects
    name = "none"
    #: one line for reports
    summary = "kernel memory is not accounted"

    def attach(self, k: Kernel) -> None:
        """Called once at boot, before the root cgroup exists."""

    def online_kmem(self, k: Kernel, memcg: MemCgroup) -> int:
        """In memcg_online_kmem() after the kmemcg id is allocated: 0 or a negative errno."""
        return 0

    def offline_kmem(self, k: Kernel, memcg: MemCgroup, parent: MemCgroup) -> None:
        """In memcg_offline_kmem(), where 5.3 deactivates caches and the seed reparents."""

    def charge_obj(self, k: Kernel, obj: KObject, nr_bytes: int, gfp: int) -> bool:
        """slab_pre_alloc_hook() + slab_post_alloc_hook() for one accounted object."""
        return True

    def uncharge_obj(self, k: Kernel, obj: KObject) -> None:
        """The slab free hook of an accounted object."""
