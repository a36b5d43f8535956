"""What user space can make the kernel allocate: the kmem caches behind the shell's ``alloc``,
``stat-missing`` and ``drop_caches``.

:class:`KmemAdapter` is the small interface the shell and the selftests go through, so that
the slab model can grow (named caches, the dentry cache, shrinkers) without touching them.
:class:`KmallocCaches` serves the kmalloc-N caches through the accounted kmalloc of
:mod:`memcgsim.mm.slab` (``kmalloc(size, GFP_KERNEL_ACCOUNT)``); it has no dentry cache and
no shrinkers, so it reports ``stat-missing`` and ``drop_caches`` as unsupported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from memcgsim.kernel.heap import GFP_KERNEL_ACCOUNT, kfree, kmalloc
from memcgsim.mm.slab import KmallocObject

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel

__all__ = ["KMALLOC_SIZES", "KmallocCaches", "KmemAdapter", "Unsupported", "kmalloc_cache_name"]

#: the kmalloc-N caches of a 4 KiB-page x86_64 kernel (KMALLOC_MIN_SIZE 8, 96 and 192 too)
KMALLOC_SIZES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)


def kmalloc_cache_name(size: int) -> str:
    """``kmalloc-64``, ``kmalloc-1k``: the names /proc/slabinfo shows (5.0+)."""
    return f"kmalloc-{size // 1024}k" if size >= 1024 else f"kmalloc-{size}"


class Unsupported(Exception):
    """The kernel model lacks what an operation needs (one line saying what)."""


class KmemAdapter(Protocol):
    """The allocations user space can cause.  Each method runs in the task that causes it."""

    def caches(self) -> list[str]:
        """Names of the caches ``alloc`` accepts."""
        ...

    def alloc(self, k: Kernel, cache: str, count: int) -> list[Any]:
        """Up to ``count`` accounted objects of ``cache`` for the current task, stopping at
        the first that fails; opaque handles the adapter keeps alive until :meth:`free`."""
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


class KmallocCaches:
    """The kmalloc-N caches, through the accounted kmalloc of the current design."""

    def __init__(self) -> None:
        self._by_name = {kmalloc_cache_name(s): s for s in KMALLOC_SIZES}

    def caches(self) -> list[str]:
        return list(self._by_name)

    def alloc(self, k: Kernel, cache: str, count: int) -> list[Any]:
        """kmalloc(size, GFP_KERNEL_ACCOUNT) of ``size``-byte objects, held as the heap's
        roots (user-held, for the leak scan)."""
        size = self._by_name[cache]
        out: list[Any] = []
        for _ in range(count):
            obj = kmalloc(k, KmallocObject, size, gfp=GFP_KERNEL_ACCOUNT)
            if obj is None:
                break
            k.heap.roots[obj._koid] = obj
            out.append(obj)
        return out

    def free(self, k: Kernel, objs: list[Any]) -> None:
        for obj in objs:
            kfree(k, obj)

    def has_dcache(self) -> bool:
        return False

    def stat_missing(self, k: Kernel, path: str) -> int:
        raise Unsupported("no dentry cache")

    def has_shrinkers(self) -> bool:
        return False

    def drop_slab(self, k: Kernel) -> None:
        raise Unsupported("no shrinkers")
