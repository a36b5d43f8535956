"""What user space can make the kernel allocate: the kmem caches behind the shell's ``alloc``,
``stat-missing`` and ``drop_caches``.

:class:`KmemAdapter` is the small interface the shell and the selftests go through;
:class:`SlabCaches` implements it over the slab model (:mod:`memcgsim.mm.slab_common`,
:mod:`memcgsim.mm.slub`, :mod:`memcgsim.mm.vmscan`), so every design accounts the objects its
own way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from memcgsim.fs import dcache
from memcgsim.kernel.errno import ENOMEM
from memcgsim.kernel.heap import GFP_KERNEL_ACCOUNT
from memcgsim.kernel.task import AccessKind
from memcgsim.mm.slab_common import CACHE_SPECS, OWNER_FREE, kmem_cache_by_name
from memcgsim.mm.slub import kmem_cache_alloc, kmem_cache_free
from memcgsim.mm.vmscan import drop_slab

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel

__all__ = ["KmemAdapter", "SlabCaches", "Unsupported"]


class Unsupported(Exception):
    """The kernel model lacks what an operation needs (one line saying what)."""


class KmemAdapter(Protocol):
    """The allocations user space can cause.  Each method runs in the task that causes it."""

    def caches(self) -> list[str]:
        """Names of the caches ``alloc`` accepts."""
        ...

    def alloc(self, k: Kernel, cache: str, count: int) -> list[Any]:
        """Up to ``count`` accounted objects of ``cache`` for the current task, stopping at
        the first that fails; opaque handles for :meth:`free`."""
        ...

    def free(self, k: Kernel, objs: list[Any]) -> None:
        """Free objects :meth:`alloc` returned."""
        ...

    def has_dcache(self) -> bool:
        """Whether :meth:`stat_missing` is supported."""
        ...

    def stat_missing(self, k: Kernel, path: str) -> int:
        """stat(2) of a name that does not exist: 0 if the lookup ran (leaving a negative
        dentry), or a negative errno other than ENOENT (-ENOMEM)."""
        ...

    def has_shrinkers(self) -> bool:
        """Whether :meth:`drop_slab` is supported."""
        ...

    def drop_slab(self, k: Kernel) -> None:
        """drop_slab(): shrink every reclaimable cache (``drop_caches`` level 2)."""
        ...


class SlabCaches:
    """The slab model's named caches, allocated with ``kmem_cache_alloc(cache,
    GFP_KERNEL_ACCOUNT)`` through the current design; a dentry cache for stat(2) of missing
    names; drop_slab() for drop_caches.

    Objects ``alloc`` makes are in use (like the dentry of an open file): they are on no LRU,
    and reclaim cannot take them.  stat(2) of a missing name looks the name up in the dcache
    hash first (a dict from name to dentry here; an entry whose dentry was reclaimed, its slot
    freed, is a miss), so a process that stats the same names twice, or threads of one
    process, as alloc_kmem_smp() has, make each negative dentry once.

    Model simplification (fs/dcache.py's): a long name's external name (a kmalloc of the
    name's length, freed with the dentry) is not allocated: each stat of a missing name costs
    one dentry (192 bytes).
    """

    def __init__(self) -> None:
        #: the dcache hash: name -> dentry slot, and slot -> name
        self._dcache: dict[str, int] = {}
        self._dcache_names: dict[int, str] = {}

    def caches(self) -> list[str]:
        return list(CACHE_SPECS)

    def alloc(self, k: Kernel, cache: str, count: int) -> list[Any]:
        """``count`` kmem_cache_alloc()s, stopping at the first failure; (cache, slot)."""
        out: list[Any] = []
        for _ in range(count):
            idx = kmem_cache_alloc(k, cache, GFP_KERNEL_ACCOUNT)
            if idx < 0:
                break
            if cache == "dentry":
                self._forget(idx)
            out.append((cache, idx))
        return out

    def free(self, k: Kernel, objs: list[Any]) -> None:
        """kmem_cache_free() of each object."""
        for cache, idx in objs:
            if cache == "dentry":
                self._forget(idx)
            kmem_cache_free(k, cache, idx)

    def _forget(self, idx: int) -> None:
        name = self._dcache_names.pop(idx, None)
        if name is not None and self._dcache.get(name) == idx:
            del self._dcache[name]

    def has_dcache(self) -> bool:
        return True

    def stat_missing(self, k: Kernel, path: str) -> int:
        """stat(2) of ``path``, which does not exist: a hit in the dcache hash returns at
        once; a miss makes a negative dentry (:func:`memcgsim.fs.dcache.stat_missing`:
        d_alloc(), d_add(dentry, NULL), dput() onto the LRU) and hashes it."""
        s = kmem_cache_by_name(k, "dentry")
        idx = self._dcache.get(path)
        k.access(s, "dcache_hashtable", AccessKind.READ)  # __d_lookup_rcu()
        if idx is not None:
            if s.arena.owner[idx] != OWNER_FREE:
                return 0  # a cached negative dentry: -ENOENT at once
            self._forget(idx)  # reclaimed since
        made = dcache.stat_missing(k, 1)
        if len(made) == 0:
            return -ENOMEM
        idx = int(made[0])
        self._forget(idx)
        self._dcache[path] = idx
        self._dcache_names[idx] = path
        return 0

    def has_shrinkers(self) -> bool:
        return True

    def drop_slab(self, k: Kernel) -> None:
        """drop_slab() (mm/vmscan.c): every shrinker, every memcg; the dentries and inodes it
        takes are freed after a grace period."""
        drop_slab(k)
