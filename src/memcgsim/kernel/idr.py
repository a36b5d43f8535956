"""ID allocators (lib/idr.c): the IDA/IDR allocate the lowest free id in a range."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from memcgsim.kernel.errno import ENOMEM, ENOSPC
from memcgsim.kernel.objects import KObject
from memcgsim.kernel.task import AccessKind

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel

__all__ = ["Ida"]


#: enum members as module constants (AccessKind.X is a slow metaclass lookup)
_RMW = AccessKind.RMW


class Ida(KObject):
    """struct ida / struct idr (without the pointer payload): lowest-free id allocation."""

    ktype = "struct ida"

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.used: set[int] = set()
        self._free: list[int] = []
        self._next = 0

    def _klabel(self) -> str:
        return self.name

    def alloc(self, k: Kernel, start: int, end: int) -> int:
        """ida_simple_get(ida, start, end): an id in [start, end), or -ENOSPC / -ENOMEM.

        The allocation of the ida's tree node may fail (fault kind ``"slab"``, site
        ``ida_alloc``), as the kernel's can under memory pressure.
        """
        k.access(self, "bitmap", _RMW)
        if k.faults.should_fail("slab", "ida_alloc", self.name):
            return -ENOMEM
        while self._free and (self._free[0] in self.used or self._free[0] < start):
            if self._free[0] < start:
                break
            heapq.heappop(self._free)
        cand = None
        # Lowest free id: reuse a released one if it is in range, else the next unused.
        for fid in sorted(i for i in self._free if start <= i < end and i not in self.used)[:1]:
            cand = fid
        if cand is None:
            nxt = max(self._next, start)
            while nxt in self.used:
                nxt += 1
            if nxt >= end:
                return -ENOSPC
            cand = nxt
            self._next = nxt + 1
        else:
            self._free.remove(cand)
            heapq.heapify(self._free)
        self.used.add(cand)
        return cand

    def remove(self, k: Kernel, id_: int) -> None:
        """ida_simple_remove(): WARN on an id that is not allocated."""
        k.access(self, "bitmap", _RMW)
        if id_ not in self.used:
            k.warn_on(True, f"ida_free called for id={id_} which is not allocated in {self.name}")
            return
        self.used.remove(id_)
        heapq.heappush(self._free, id_)

    def __len__(self) -> int:
        return len(self.used)
