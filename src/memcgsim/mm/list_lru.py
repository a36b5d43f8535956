"""Memcg-aware LRU lists of reclaimable slab objects (mm/list_lru.c, 5.3).

A :class:`ListLru` (a superblock's ``s_dentry_lru`` or ``s_inode_lru``) has one list per
kmemcg id plus the global list of the root memcg.  An object goes on the list of the memcg
``mem_cgroup_from_kmem()`` gives for it (whatever the accounting design says owns it), so that
reclaim of a memcg scans only its own objects; when a memcg goes offline its list is spliced
into the parent's (``memcg_drain_all_list_lrus``, O(1) per list).

The lists are linked through the slab arena's ``lru_next``/``lru_prev`` arrays (an object's
``struct list_head d_lru``), so membership costs no Python object per item.  -2 marks an
object on no list; -1 ends a list.  Model simplifications: one node; the per-node spinlock
``nlru->lock`` is one scheduling point per operation; no shrinker bitmap (memcgs with empty
lists are simply skipped).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from memcgsim.kernel.objects import KObject
from memcgsim.kernel.task import AccessKind
from memcgsim.kernel.violations import ViolationKind

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from memcgsim.kernel.kernel import Kernel
    from memcgsim.mm.memcontrol import MemCgroup
    from memcgsim.mm.slab_common import KmemCache

__all__ = [
    "ListLru",
    "ListLruOne",
    "list_lru_add",
    "list_lru_add_bulk",
    "list_lru_count",
    "list_lru_count_one",
    "list_lru_del",
    "list_lru_walk_one",
    "memcg_drain_all_list_lrus",
]

NOT_ON_LRU = -2
END = -1


#: enum members as module constants (AccessKind.X is a slow metaclass lookup)
_RMW = AccessKind.RMW


class ListLruOne:
    """struct list_lru_one: one list and its item count."""

    __slots__ = ("head", "nr_items", "tail")

    def __init__(self) -> None:
        self.head = END
        self.tail = END
        self.nr_items = 0


class ListLru(KObject):
    """struct list_lru of one reclaimable cache (and its per-memcg copies)."""

    ktype = "struct list_lru"

    def __init__(self, k: Kernel, cache: KmemCache) -> None:
        super().__init__()
        self.cache = cache
        self.name = f"{cache.name}_lru"
        #: node->lru (the root memcg's list, kmemcg id -1)
        self.lru = ListLruOne()
        #: node->memcg_lrus->lru[kmemcg_id]
        self.memcg_lrus: dict[int, ListLruOne] = {}
        k.heap.adopt(self, "list_lru_init_memcg", static=True)
        k.memcg.list_lrus.append(self)

    def _klabel(self) -> str:
        return self.name


def _list(lru: ListLru, idx: int) -> ListLruOne:
    """list_lru_from_memcg_idx(): the list of kmemcg id ``idx`` (-1: the global list)."""
    if idx < 0:
        return lru.lru
    lo = lru.memcg_lrus.get(idx)
    if lo is None:
        lo = lru.memcg_lrus[idx] = ListLruOne()
    return lo


def _memcg_cache_id(memcg: MemCgroup | None) -> int:
    """memcg_cache_id(): the memcg's kmemcg id, -1 for the root or none."""
    return memcg.kmemcg_id if memcg is not None else -1


def list_lru_from_kmem(k: Kernel, lru: ListLru, idx: int) -> ListLruOne:
    """list_lru_from_kmem(): the list of the memcg the design says owns object ``idx``."""
    memcg = k.design.mem_cgroup_from_obj(k, lru.cache, idx)
    return _list(lru, _memcg_cache_id(memcg))


def list_lru_add(k: Kernel, lru: ListLru, idx: int) -> bool:
    """list_lru_add(): put object ``idx`` at the tail of its memcg's list; False if it is
    already on a list."""
    a = lru.cache.arena
    k.access(lru, "node.lock", _RMW)
    if a.lru_prev_mv[idx] != NOT_ON_LRU:
        return False
    lo = list_lru_from_kmem(k, lru, idx)
    tail = lo.tail
    a.lru_prev_mv[idx] = tail
    a.lru_next_mv[idx] = END
    if tail == END:
        lo.head = idx
    else:
        a.lru_next_mv[tail] = idx
    lo.tail = idx
    lo.nr_items += 1
    return True


def list_lru_add_bulk(k: Kernel, lru: ListLru, idxs: NDArray[np.int64]) -> None:
    """list_lru_add() of objects that share one owner, in order (one lock section)."""
    n = len(idxs)
    if n == 0:
        return
    a = lru.cache.arena
    k.access(lru, "node.lock", _RMW)
    if np.any(a.lru_prev[idxs] != NOT_ON_LRU):
        k.report(ViolationKind.LIST_CORRUPTION, f"list_lru_add of an object already on {lru.name}")
        return
    lo = list_lru_from_kmem(k, lru, int(idxs[0]))
    tail = lo.tail
    a.lru_prev[idxs[1:]] = idxs[:-1]
    a.lru_next[idxs[:-1]] = idxs[1:]
    first = int(idxs[0])
    last = int(idxs[-1])
    a.lru_prev_mv[first] = tail
    a.lru_next_mv[last] = END
    if tail == END:
        lo.head = first
    else:
        a.lru_next_mv[tail] = first
    lo.tail = last
    lo.nr_items += n


def _unlink(a: object, lo: ListLruOne, idx: int) -> None:
    prev = a.lru_prev_mv[idx]  # type: ignore[attr-defined]
    nxt = a.lru_next_mv[idx]  # type: ignore[attr-defined]
    if prev == END:
        lo.head = nxt
    else:
        a.lru_next_mv[prev] = nxt  # type: ignore[attr-defined]
    if nxt == END:
        lo.tail = prev
    else:
        a.lru_prev_mv[nxt] = prev  # type: ignore[attr-defined]
    a.lru_prev_mv[idx] = NOT_ON_LRU  # type: ignore[attr-defined]
    a.lru_next_mv[idx] = NOT_ON_LRU  # type: ignore[attr-defined]
    lo.nr_items -= 1


def list_lru_del(k: Kernel, lru: ListLru, idx: int) -> bool:
    """list_lru_del(): take object ``idx`` off its list; False if it is on none."""
    a = lru.cache.arena
    k.access(lru, "node.lock", _RMW)
    if a.lru_prev_mv[idx] == NOT_ON_LRU:
        return False
    _unlink(a, list_lru_from_kmem(k, lru, idx), idx)
    return True


def list_lru_count_one(lru: ListLru, memcg: MemCgroup | None) -> int:
    """list_lru_count_one(): items on the list of ``memcg`` (None or root: the global list)."""
    return _list(lru, _memcg_cache_id(memcg)).nr_items


def list_lru_count(lru: ListLru) -> int:
    """list_lru_count(): items on every list."""
    return lru.lru.nr_items + sum(lo.nr_items for lo in lru.memcg_lrus.values())


def list_lru_walk_one(k: Kernel, lru: ListLru, memcg: MemCgroup | None,
                      nr_to_walk: int) -> list[int]:
    """list_lru_walk_one() with an isolate callback that removes every item it meets (an
    unused dentry or inode, as dentry_lru_isolate()/inode_lru_isolate() do for objects
    without references): up to ``nr_to_walk`` objects from the head, oldest first."""
    a = lru.cache.arena
    k.access(lru, "node.lock", _RMW)
    lo = _list(lru, _memcg_cache_id(memcg))
    out: list[int] = []
    nxt_mv = a.lru_next_mv
    prev_mv = a.lru_prev_mv
    idx = lo.head
    while idx != END and len(out) < nr_to_walk:
        nxt = nxt_mv[idx]
        nxt_mv[idx] = NOT_ON_LRU
        prev_mv[idx] = NOT_ON_LRU
        out.append(idx)
        idx = nxt
    lo.head = idx
    if idx == END:
        lo.tail = END
    else:
        prev_mv[idx] = END
    lo.nr_items -= len(out)
    return out


def memcg_drain_list_lru(k: Kernel, lru: ListLru, src_idx: int, dst_memcg: MemCgroup) -> int:
    """memcg_drain_list_lru_node(): splice the list of kmemcg id ``src_idx`` onto the front
    of ``dst_memcg``'s (list_splice_init); returns the items moved."""
    k.access(lru, "node.lock", _RMW)
    src = lru.memcg_lrus.get(src_idx)
    if src is None or src.nr_items == 0:
        return 0
    dst = _list(lru, _memcg_cache_id(dst_memcg))
    a = lru.cache.arena
    n = src.nr_items
    if dst.head == END:
        dst.tail = src.tail
    else:
        a.lru_next_mv[src.tail] = dst.head
        a.lru_prev_mv[dst.head] = src.tail
    dst.head = src.head
    dst.nr_items += n
    src.head = src.tail = END
    src.nr_items = 0
    return n


def memcg_drain_all_list_lrus(k: Kernel, src_idx: int, dst_memcg: MemCgroup) -> None:
    """memcg_drain_all_list_lrus(): drain every memcg-aware list_lru (under list_lrus_mutex)."""
    for lru in k.memcg.list_lrus:
        memcg_drain_list_lru(k, lru, src_idx, dst_memcg)
