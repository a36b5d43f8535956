"""The SLUB allocator (mm/slub.c, around 5.3) over the array-backed slab pages.

Allocation takes the next free object of this CPU's slab (the lockless fast path); when it has
none, the slow path (``___slab_alloc``) retires that slab (full, or back on the partial list),
takes the first slab of the node's partial list, or allocates a new slab page, which is where
the page designs charge it.  A free puts the object back on its page: a full page goes to the
tail of the partial list, and a page that becomes empty is discarded when the node already
keeps ``min_partial`` partial slabs (otherwise it stays, empty, for reuse).

The accounting hooks of the design run around this: ``slab_pre_alloc_hook`` picks the cache
(a per-memcg copy in the 5.3-and-earlier designs) and charges bytes (the byte designs),
``slab_post_alloc_hook`` records owners, and ``memcg_slab_free_hook`` uncharges a freed
object.  ``kmem_cache_alloc_bulk``/``kmem_cache_free_bulk`` do the same for many objects with
array operations; they leave the slab pages in exactly the state the same sequence of
single-object calls leaves them in.

Model simplifications: no per-cpu partial lists, one node; the lockless fast path is one
scheduling point on the cache's per-cpu state, and each ``n->list_lock`` section is one point
(the explorer interleaves between them, not inside); object constructors, poisoning and
``SLAB_TYPESAFE_BY_RCU`` are not modelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from memcgsim.kernel.heap import Gfp
from memcgsim.kernel.task import AccessKind, Context
from memcgsim.kernel.violations import ViolationKind
from memcgsim.mm.slab_common import (
    OWNER_FREE,
    OWNER_NONE,
    KmemCache,
    PageState,
    kmem_cache_by_name,
    slab_globals,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from memcgsim.kernel.kernel import Kernel

__all__ = [
    "EMPTY",
    "cache_from_obj",
    "discard_slab",
    "flush_all",
    "kmem_cache_alloc",
    "kmem_cache_alloc_bulk",
    "kmem_cache_free",
    "kmem_cache_free_bulk",
    "kmem_cache_shrink",
    "kmem_cache_shutdown",
    "slab_accounted",
    "slab_kmem_cache_release",
]

_CPU = int(PageState.CPU)
_PARTIAL = int(PageState.PARTIAL)
_FULL = int(PageState.FULL)
_UNUSED = int(PageState.UNUSED)
_RMW = AccessKind.RMW
_ACCOUNT = int(Gfp.ACCOUNT)
_DIRECT_RECLAIM = int(Gfp.DIRECT_RECLAIM)

#: an empty result of kmem_cache_alloc_bulk()
EMPTY: NDArray[np.int64] = np.zeros(0, dtype=np.int64)


#: enum members as module constants (AccessKind.X is a slow metaclass lookup)
_WRITE = AccessKind.WRITE


def _atomic_or_rcu(k: Kernel) -> bool:
    """Whether might_sleep() would complain here (checked first, so that the message is only
    built when it is needed: this runs on every allocation)."""
    cpu = k.this_cpu
    return bool(cpu.preempt_count or cpu.irqs_disabled or cpu.rcu_nesting
                or (k.current is not None and k.current.context is not Context.PROCESS))


def slab_accounted(s: KmemCache, gfp: int) -> bool:
    """Whether an allocation from ``s`` is charged: __GFP_ACCOUNT or SLAB_ACCOUNT."""
    return bool(gfp & _ACCOUNT or s.account)


def _pt(k: Kernel, s: KmemCache, what: str) -> None:
    k.access(s, what, _RMW)


# ====================================================================== slab pages
def allocate_slab(k: Kernel, s: KmemCache, gfp: int) -> int:
    """allocate_slab() / new_slab(): a fresh slab page for ``s`` with every object free
    (first object on top), charged as the design wants; -1 if the page allocation or its
    charge fails."""
    if k.faults.should_fail("slab", "allocate_slab", s.name):
        k.trace("page_alloc_failure", s.name)
        return -1
    a = s.arena
    pg = a.alloc_page()
    objs = s.objects
    base = pg * objs
    # The freelist of a new slab runs in object order: slot 0 is allocated first.
    a.stack[base: base + objs] = np.arange(base + objs - 1, base - 1, -1, dtype=np.int32)
    a.nfree_mv[pg] = objs
    a.inuse_mv[pg] = 0
    a.cache_mv[pg] = s.id
    a.state_mv[pg] = _CPU
    a.charge_mv[pg] = 0
    if not k.design.charge_slab_page(k, s, pg, gfp):
        a.cache_mv[pg] = -1
        a.state_mv[pg] = _UNUSED
        a.nfree_mv[pg] = 0
        a.free_pages.append(pg)
        return -1
    s.nr_slabs += 1
    g = k.slab
    g.nr_pages_allocated += 1
    g.pages_now += 1 << s.order
    if g.pages_now > g.pages_peak:
        g.pages_peak = g.pages_now
    return pg


def __free_slab(k: Kernel, s: KmemCache, pg: int) -> None:
    """__free_slab(): uncharge and free a slab page (no object on it is in use)."""
    a = s.arena
    k.design.uncharge_slab_page(k, s, pg)
    a.cache_mv[pg] = -1
    a.state_mv[pg] = _UNUSED
    a.nfree_mv[pg] = 0
    a.free_pages.append(pg)
    s.nr_slabs -= 1
    g = k.slab
    g.nr_pages_freed += 1
    g.pages_now -= 1 << s.order


def discard_slab(k: Kernel, s: KmemCache, pg: int) -> None:
    """discard_slab(): free a slab page that is on no list."""
    __free_slab(k, s, pg)


def _add_partial(s: KmemCache, pg: int, tail: bool) -> None:
    """add_partial(n, page, tail)."""
    s.partial[pg] = None
    if not tail:
        s.partial.move_to_end(pg, last=False)
    s.nr_partial += 1
    s.arena.state_mv[pg] = _PARTIAL


def _remove_partial(s: KmemCache, pg: int) -> None:
    del s.partial[pg]
    s.nr_partial -= 1


def deactivate_slab(k: Kernel, s: KmemCache, pg: int) -> None:
    """deactivate_slab(): this CPU stops allocating from page ``pg`` (unfreeze it): an empty
    page is discarded if the node keeps enough partial slabs, a page with free objects goes
    to the head of the partial list, a full one is left off every list."""
    a = s.arena
    _pt(k, s, "node.list_lock")
    if a.inuse_mv[pg] == 0 and s.nr_partial >= s.min_partial:
        discard_slab(k, s, pg)
    elif a.nfree_mv[pg]:
        _add_partial(s, pg, tail=False)
    else:
        a.state_mv[pg] = _FULL
        s.nr_full += 1


def get_partial(k: Kernel, s: KmemCache) -> int:
    """get_partial_node(): take the first slab off the node's partial list (-1: none)."""
    if not s.nr_partial:
        return -1
    _pt(k, s, "node.list_lock")
    pg, _ = s.partial.popitem(last=False)
    s.nr_partial -= 1
    s.arena.state_mv[pg] = _CPU
    return pg


def _refill_cpu_slab(k: Kernel, s: KmemCache, cpu: int, gfp: int) -> int:
    """___slab_alloc()'s new_slab path: retire this CPU's exhausted slab and install a
    partial or new one as the CPU slab; -1 if a new slab cannot be had."""
    old = s.cpu_slab[cpu]
    if old >= 0:
        s.cpu_slab[cpu] = -1
        deactivate_slab(k, s, old)
    pg = get_partial(k, s)
    if pg < 0:
        pg = allocate_slab(k, s, gfp)
        if pg < 0:
            return -1
    s.cpu_slab[cpu] = pg
    return pg


# ====================================================================== allocation
def _slab_alloc_node(k: Kernel, s: KmemCache, gfp: int) -> int:
    """slab_alloc_node(): one object (its slot index), or -1."""
    cpu = k.this_cpu.id
    # this_cpu_cmpxchg_double(s->cpu_slab->freelist, ...)
    k.access(s, "cpu_slab.freelist", _RMW)
    a = s.arena
    pg = s.cpu_slab[cpu]
    if pg < 0 or not a.nfree_mv[pg]:
        pg = _refill_cpu_slab(k, s, cpu, gfp)
        if pg < 0:
            return -1
    n = a.nfree_mv[pg] - 1
    a.nfree_mv[pg] = n
    idx: int = a.stack_mv[pg * s.objects + n]
    a.inuse_mv[pg] += 1
    a.owner_mv[idx] = OWNER_NONE
    s.nr_inuse += 1
    return idx


def kmem_cache_alloc(k: Kernel, s: KmemCache | str, gfp: int) -> int:
    """kmem_cache_alloc(): an object of root cache ``s`` (or its memcg copy), as a slot index;
    -1 if the charge or the slab page allocation failed."""
    if isinstance(s, str):
        s = kmem_cache_by_name(k, s)
    if gfp & _DIRECT_RECLAIM and _atomic_or_rcu(k):
        k.might_sleep(f"kmem_cache_alloc({s.name}, GFP_KERNEL)")
    design = k.design
    c, ctx = design.slab_pre_alloc_hook(k, s, 1, gfp)
    if c is None:
        return -1
    idx = _slab_alloc_node(k, c, gfp)
    if idx < 0:
        design.slab_alloc_failed(k, c, ctx, 1)
        return -1
    design.slab_post_alloc_hook(k, c, ctx, (idx,))
    return idx


def kmem_cache_alloc_bulk(k: Kernel, s: KmemCache | str, gfp: int,
                          nr: int) -> NDArray[np.int64]:
    """kmem_cache_alloc_bulk(): ``nr`` objects at once (their slot indices, in the order
    ``nr`` kmem_cache_alloc() calls would return them), or none if any could not be had.

    One charge for all of them (as the kernel's slab_pre_alloc_hook(s, size) does), the
    objects taken page by page from the CPU slab with array slices.
    """
    if isinstance(s, str):
        s = kmem_cache_by_name(k, s)
    if nr <= 0:
        return EMPTY
    if gfp & _DIRECT_RECLAIM and _atomic_or_rcu(k):
        k.might_sleep(f"kmem_cache_alloc_bulk({s.name}, GFP_KERNEL)")
    design = k.design
    c, ctx = design.slab_pre_alloc_hook(k, s, nr, gfp)
    if c is None:
        return EMPTY
    cpu = k.this_cpu.id
    a = c.arena
    objs = c.objects
    parts: list[NDArray[np.int32]] = []
    need = nr
    k.access(c, "cpu_slab.freelist", _RMW)
    while need:
        pg = c.cpu_slab[cpu]
        if pg < 0 or not a.nfree_mv[pg]:
            pg = _refill_cpu_slab(k, c, cpu, gfp)
            if pg < 0:
                got = np.concatenate(parts).astype(np.int64) if parts else EMPTY
                a.owner[got] = OWNER_NONE
                c.nr_inuse += len(got)
                design.slab_alloc_failed(k, c, ctx, need)
                design.slab_post_alloc_hook(k, c, ctx, got)
                kmem_cache_free_bulk(k, c, got)
                return EMPTY
            k.access(c, "cpu_slab.freelist", _RMW)
        nfree = a.nfree_mv[pg]
        take = min(need, nfree)
        base = pg * objs
        seg = a.stack[base + nfree - take: base + nfree]
        parts.append(seg[::-1].copy())
        a.nfree_mv[pg] = nfree - take
        a.inuse_mv[pg] += take
        need -= take
    idxs = parts[0].astype(np.int64) if len(parts) == 1 else np.concatenate(parts).astype(np.int64)
    a.owner[idxs] = OWNER_NONE
    c.nr_inuse += nr
    design.slab_post_alloc_hook(k, c, ctx, idxs)
    return idxs


# ====================================================================== free
def cache_from_obj(k: Kernel, s: KmemCache, idx: int) -> KmemCache | None:
    """cache_from_obj() / virt_to_cache(): the cache whose page holds object ``idx`` of
    ``s``'s arena; None (and a report) if the page is not a slab page in use."""
    a = s.arena
    pg = idx // s.objects
    if not 0 <= idx < len(a.owner) or a.state_mv[pg] == _UNUSED:
        k.report(ViolationKind.INVALID_FREE,
                 f"kmem_cache_free({s.name}): object {idx} is not on a slab page in use")
        return None
    c = k.slab.caches[a.cache_mv[pg]]
    if c.root is not s.root:
        k.report(ViolationKind.INVALID_FREE,
                 f"cache_from_obj: wrong slab cache. {s.name} but object is from {c.name}")
        return None
    return c


def _slab_free(k: Kernel, s: KmemCache, pg: int, idx: int) -> None:
    """do_slab_free() / __slab_free(): put ``idx`` back on its page; list moves."""
    a = s.arena
    n = a.nfree_mv[pg]
    a.stack_mv[pg * s.objects + n] = idx
    a.nfree_mv[pg] = n + 1
    inuse = a.inuse_mv[pg] - 1
    a.inuse_mv[pg] = inuse
    s.nr_inuse -= 1
    state = a.state_mv[pg]
    if state == _CPU:
        return  # a CPU's slab: the lockless fast path
    _pt(k, s, "node.list_lock")
    if inuse == 0 and s.nr_partial >= s.min_partial:
        # slab_empty:
        if state == _PARTIAL:
            _remove_partial(s, pg)
        else:
            s.nr_full -= 1
        discard_slab(k, s, pg)
    elif state == _FULL:
        s.nr_full -= 1
        _add_partial(s, pg, tail=True)


def kmem_cache_free(k: Kernel, s: KmemCache | str, idx: int) -> None:
    """kmem_cache_free(): free object ``idx``; a double free or an object still on an LRU
    is reported, as KASAN and CONFIG_DEBUG_LIST would."""
    if isinstance(s, str):
        s = kmem_cache_by_name(k, s)
    c = cache_from_obj(k, s, idx)
    if c is None:
        return
    a = c.arena
    k.access(c, "cpu_slab.freelist", _RMW)
    if a.owner_mv[idx] == OWNER_FREE:
        k.report(ViolationKind.DOUBLE_FREE, f"double-free of {c.name} object {idx}")
        return
    if a.lru and a.lru_prev_mv[idx] != -2:
        k.report(ViolationKind.LIST_CORRUPTION,
                 f"kmem_cache_free of {c.name} object {idx} still on its list_lru")
        return
    k.design.slab_free_hook(k, c, (idx,))
    a.owner_mv[idx] = OWNER_FREE
    _slab_free(k, c, idx // c.objects, idx)


def kmem_cache_free_bulk(k: Kernel, s: KmemCache | str, idxs: NDArray[np.int64]) -> None:
    """kmem_cache_free_bulk(): free many objects (in order), with array operations; the
    pages end exactly as the same kmem_cache_free() calls in that order leave them."""
    if isinstance(s, str):
        s = kmem_cache_by_name(k, s)
    n = len(idxs)
    if n == 0:
        return
    idxs = np.asarray(idxs, dtype=np.int64)
    a = s.arena
    objs = s.objects
    pgs = idxs // objs
    if (np.any(idxs < 0) or np.any(idxs >= len(a.owner))
            or np.any(a.page_state[pgs] == _UNUSED)):
        k.report(ViolationKind.INVALID_FREE,
                 f"kmem_cache_free_bulk({s.name}): an object is not on a slab page in use")
        return
    if np.any(a.owner[idxs] == OWNER_FREE) or len(np.unique(idxs)) != n:
        k.report(ViolationKind.DOUBLE_FREE, f"double-free in kmem_cache_free_bulk({s.name})")
        return
    if a.lru and np.any(a.lru_prev[idxs] != -2):
        k.report(ViolationKind.LIST_CORRUPTION,
                 f"kmem_cache_free_bulk of {s.name} objects still on their list_lru")
        return
    caches = a.page_cache[pgs]
    ucaches = np.unique(caches)
    if len(ucaches) > 1:
        # Objects of several memcg copies: free each copy's objects, in order.
        for cid in ucaches.tolist():
            kmem_cache_free_bulk(k, k.slab.caches[cid], idxs[caches == cid])
        return
    c = k.slab.caches[int(ucaches[0])]
    if c.root is not s.root:
        k.report(ViolationKind.INVALID_FREE,
                 f"cache_from_obj: wrong slab cache. {s.name} but objects are from {c.name}")
        return
    k.access(c, "cpu_slab.freelist", _RMW)
    k.design.slab_free_hook(k, c, idxs)
    a.owner[idxs] = OWNER_FREE
    # Push each object on its page's free stack in order: position = the page's free count
    # before the call + the object's rank among the page's objects in this call.
    order = np.argsort(pgs, kind="stable")
    spg = pgs[order]
    starts = np.flatnonzero(np.r_[True, spg[1:] != spg[:-1]])
    counts = np.diff(np.r_[starts, n])
    upg = spg[starts]
    rank = np.arange(n) - np.repeat(starts, counts)
    nfree0 = a.page_nfree[upg]
    a.stack[spg * objs + np.repeat(nfree0, counts) + rank] = idxs[order]
    inuse0 = a.page_inuse[upg].copy()
    a.page_nfree[upg] = nfree0 + counts
    a.page_inuse[upg] = inuse0 - counts
    c.nr_inuse -= n
    # List moves happen at a page's first free (a full page becomes partial) and at the free
    # that empties it; replay those events in call order.
    first = order[starts]  # position in idxs of each page's first object
    last = order[starts + counts - 1]
    events: list[tuple[int, int, int]] = []
    states = a.page_state[upg]
    for i, p in enumerate(upg.tolist()):
        st = int(states[i])
        if st == _CPU:
            continue
        empties = inuse0[i] == counts[i]
        if st == _FULL and inuse0[i] == 1:
            events.append((int(first[i]), _EV_FULL_TO_EMPTY, p))
            continue
        if st == _FULL:
            events.append((int(first[i]), _EV_FULL_TO_PARTIAL, p))
        if empties:
            events.append((int(last[i]), _EV_EMPTY, p))
    events.sort()
    for _, kind, p in events:
        _pt(k, c, "node.list_lock")
        if kind == _EV_FULL_TO_PARTIAL:
            c.nr_full -= 1
            _add_partial(c, p, tail=True)
        elif kind == _EV_FULL_TO_EMPTY:
            c.nr_full -= 1
            if c.nr_partial >= c.min_partial:
                discard_slab(k, c, p)
            else:
                _add_partial(c, p, tail=True)
        elif c.nr_partial >= c.min_partial:
            _remove_partial(c, p)
            discard_slab(k, c, p)


_EV_FULL_TO_PARTIAL = 0
_EV_EMPTY = 1
_EV_FULL_TO_EMPTY = 2


# ====================================================================== shrink and destroy
def flush_all(k: Kernel, s: KmemCache) -> None:
    """flush_all(): every CPU gives up its slab of ``s`` (deactivate_slab)."""
    for cpu, pg in enumerate(s.cpu_slab):
        if pg >= 0:
            s.cpu_slab[cpu] = -1
            deactivate_slab(k, s, pg)


def kmem_cache_shrink(k: Kernel, s: KmemCache) -> int:
    """__kmem_cache_shrink(): flush the CPU slabs and free every empty partial slab, whatever
    min_partial says; returns the slabs freed."""
    flush_all(k, s)
    a = s.arena
    _pt(k, s, "node.list_lock")
    empty = [pg for pg in s.partial if a.inuse_mv[pg] == 0]
    for pg in empty:
        _remove_partial(s, pg)
        discard_slab(k, s, pg)
    return len(empty)


def slab_kmem_cache_release(k: Kernel, s: KmemCache) -> None:
    """slab_kmem_cache_release(): free the struct kmem_cache of a shut-down cache (a later
    access to it is a use-after-free)."""
    if not s._kstatic and s._koid in k.heap.live:
        k.point(s, "<slab>", _WRITE)
        k.heap.release(s)


def kmem_cache_shutdown(k: Kernel, s: KmemCache) -> bool:
    """__kmem_cache_shutdown() and shutdown_cache()'s unpublishing: destroy ``s`` if it has
    no objects in use (True); otherwise leave it ("Slab cache still has objects") and return
    False.  The caller unlinks it, then frees it with slab_kmem_cache_release()."""
    kmem_cache_shrink(k, s)
    if s.nr_slabs:
        return False
    s.destroyed = True
    root = s.memcg_params.root_cache
    if root is not None:
        for idx, c in list(root.memcg_params.memcg_caches.items()):
            if c is s:
                del root.memcg_params.memcg_caches[idx]
    if s.is_root_cache:
        slab_globals(k).by_name.pop(s.name, None)
    return True
