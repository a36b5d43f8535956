"""Slab caches (mm/slab_common.c, mm/slab.h, include/linux/slab.h; SLUB geometry).

A :class:`KmemCache` is a ``struct kmem_cache``: a name, an object size and alignment, and
the SLUB geometry computed from them (``calculate_sizes()``/``calculate_order()``: the page
order of a slab and how many objects it holds), with per-cpu slabs and a partial list
(:mod:`memcgsim.mm.slub` allocates from them).

Objects are not Python objects.  A root cache and the per-memcg copies made from it (the 5.3
and earlier designs) share one :class:`SlabArena`: numpy arrays indexed by slab page and by
object slot, so that an object is an integer (its slot index) and ten million of them fit in
a few hundred megabytes.  The per-slot ``owner`` array is the page's ownership vector
(``page->mem_cgroup_vec`` of the RFC, ``page_obj_cgroups()`` of 5.9): it holds a small integer
*handle* that :class:`SlabGlobals` maps to the model object (a mem_cgroup_ptr, an obj_cgroup,
a memcg), or 0 for an object nobody is charged for, or -1 for a free slot.

Model simplifications: one NUMA node; no per-cpu partial lists (``cpu_partial``); no debug
metadata, red zones or KASAN padding in the object size; a slab page's free objects are an
array stack (LIFO, the order SLUB's freelist threaded through the objects gives) rather than
pointers stored in the objects.  Caches are created when first used instead of at boot.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from memcgsim.kernel.list import ListHead
from memcgsim.kernel.locking import Mutex
from memcgsim.kernel.objects import KObject
from memcgsim.kernel.percpu_ref import PercpuRef
from memcgsim.kernel.rcu import RcuHead
from memcgsim.kernel.task import AccessKind
from memcgsim.kernel.workqueue import WorkStruct

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from memcgsim.kernel.kernel import Kernel
    from memcgsim.mm.list_lru import ListLru
    from memcgsim.mm.memcontrol import MemCgroup

__all__ = [
    "CACHE_SPECS",
    "KMALLOC_SIZES",
    "CacheSpec",
    "KmemCache",
    "PageState",
    "SlabArena",
    "SlabFlags",
    "SlabGlobals",
    "calculate_order",
    "kmalloc_index",
    "kmem_cache_by_name",
    "kmem_cache_create",
    "kmem_cache_init",
    "owner_handle",
    "owner_object",
    "slab_globals",
]

#: SLUB: slub_max_order (PAGE_ALLOC_COSTLY_ORDER)
SLUB_MAX_ORDER = 3
#: MIN_PARTIAL / MAX_PARTIAL: empty slabs a node keeps on its partial list
MIN_PARTIAL = 5
MAX_PARTIAL = 10
#: MAX_ORDER of the page allocator
MAX_ORDER = 11

#: slot state in the owner array
OWNER_FREE = -1
OWNER_NONE = 0


class SlabFlags(enum.IntFlag):
    """The slab_flags_t bits the model distinguishes (include/linux/slab.h)."""

    NONE = 0
    SLAB_HWCACHE_ALIGN = 0x00002000
    SLAB_PANIC = 0x00040000
    SLAB_TYPESAFE_BY_RCU = 0x00080000
    SLAB_RECLAIM_ACCOUNT = 0x00020000
    SLAB_ACCOUNT = 0x04000000
    #: 5.3: set by kmemcg_cache_deactivate() on a dying per-memcg cache
    SLAB_DEACTIVATED = 0x10000000


class PageState(enum.IntEnum):
    """Where a slab page is: the model's view of page->frozen and the node lists."""

    UNUSED = 0
    #: a CPU's current slab (frozen): allocations come from it
    CPU = 1
    #: on the node's partial list
    PARTIAL = 2
    #: all objects in use (SLUB keeps full slabs off every list unless debugging)
    FULL = 3


@dataclass(frozen=True)
class CacheSpec:
    """How a cache is created: kmem_cache_create(name, size, align, flags, ctor)."""

    name: str
    object_size: int
    align: int = 8
    flags: SlabFlags = SlabFlags.NONE
    #: reclaimable objects sit on a list_lru with a shrinker (the superblock's)
    lru: bool = False
    #: what the cache holds, for documentation and reports
    doc: str = ""


#: kmalloc_caches[] sizes (KMALLOC_MIN_SIZE 8 on x86_64, plus the 96 and 192 caches)
KMALLOC_SIZES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)

_RA = SlabFlags.SLAB_RECLAIM_ACCOUNT | SlabFlags.SLAB_ACCOUNT
_HW = SlabFlags.SLAB_HWCACHE_ALIGN

#: The named caches the model knows, with sizes from a 5.3 x86_64 build (slabinfo objsize).
CACHE_SPECS: dict[str, CacheSpec] = {
    spec.name: spec for spec in (
        CacheSpec("dentry", 192, 8, _RA, lru=True,
                  doc="struct dentry (fs/dcache.c dentry_cache); negative dentries included"),
        CacheSpec("inode_cache", 600, 8, _RA, lru=True,
                  doc="struct inode of pseudo filesystems (fs/inode.c inode_cachep)"),
        CacheSpec("ext4_inode_cache", 1080, 8, _RA, lru=True,
                  doc="struct ext4_inode_info (fs/ext4/super.c)"),
        CacheSpec("sock_inode_cache", 704, 64, _HW | _RA,
                  doc="struct socket_alloc (net/socket.c); reclaimable flag, no LRU"),
        CacheSpec("TCP", 2176, 64, _HW | SlabFlags.SLAB_ACCOUNT,
                  doc="struct tcp_sock (proto_register: SLAB_ACCOUNT)"),
        CacheSpec("task_struct", 9792, 64, _HW | SlabFlags.SLAB_ACCOUNT,
                  doc="struct task_struct with the FPU state (kernel/fork.c)"),
        CacheSpec("mm_struct", 1088, 64, _HW | SlabFlags.SLAB_ACCOUNT,
                  doc="struct mm_struct (kernel/fork.c)"),
        CacheSpec("signal_cache", 1088, 64, _HW | SlabFlags.SLAB_ACCOUNT,
                  doc="struct signal_struct (kernel/fork.c)"),
        CacheSpec("files_cache", 704, 64, _HW | SlabFlags.SLAB_ACCOUNT,
                  doc="struct files_struct (kernel/fork.c)"),
        CacheSpec("radix_tree_node", 576, 8, _RA,
                  doc="struct radix_tree_node (lib/radix-tree.c)"),
        *(CacheSpec(f"kmalloc-{n}" if n < 1024 else f"kmalloc-{n // 1024}k", n, 8,
                    SlabFlags.NONE, doc=f"kmalloc() of up to {n} bytes")
          for n in KMALLOC_SIZES),
    )
}


def kmalloc_index(size: int) -> str:
    """kmalloc_slab(): the name of the kmalloc cache serving ``size`` bytes."""
    if size <= 0:
        raise ValueError(f"kmalloc size must be positive, not {size}")
    for n in KMALLOC_SIZES:
        if size <= n:
            return f"kmalloc-{n}" if n < 1024 else f"kmalloc-{n // 1024}k"
    raise ValueError(f"kmalloc size {size} is above the largest kmalloc cache (8192)")


def _fls(x: int) -> int:
    return x.bit_length()


def _get_order(size: int, page_size: int) -> int:
    """get_order(): the smallest order whose block holds ``size`` bytes."""
    order = 0
    while (page_size << order) < size:
        order += 1
    return order


def _slab_order(size: int, min_objects: int, max_order: int, fract_leftover: int,
                page_size: int) -> int:
    """slab_order() (mm/slub.c)."""
    order = max(0, _get_order(min_objects * size, page_size))
    while order <= max_order:
        slab_size = page_size << order
        if slab_size % size <= slab_size // fract_leftover:
            break
        order += 1
    return order


def calculate_order(size: int, nr_cpus: int, page_size: int) -> int:
    """calculate_order() (mm/slub.c): prefer slabs of at least 4 * (fls(nr_cpu_ids) + 1)
    objects that waste at most 1/16, 1/8 or 1/4 of the slab, up to slub_max_order."""
    min_objects = 4 * (_fls(nr_cpus) + 1)
    max_objects = (page_size << SLUB_MAX_ORDER) // size
    min_objects = min(min_objects, max_objects)
    while min_objects > 1:
        fraction = 16
        while fraction >= 4:
            order = _slab_order(size, min_objects, SLUB_MAX_ORDER, fraction, page_size)
            if order <= SLUB_MAX_ORDER:
                return order
            fraction //= 2
        min_objects -= 1
    order = _slab_order(size, 1, SLUB_MAX_ORDER, 1, page_size)
    if order <= SLUB_MAX_ORDER:
        return order
    return _slab_order(size, 1, MAX_ORDER, 1, page_size)


def _ilog2(x: int) -> int:
    return x.bit_length() - 1


class SlabArena:
    """The slab pages of one root cache and its per-memcg copies, as arrays.

    Page arrays (``page_*``) are indexed by page number; object arrays by slot index
    ``page * objects + slot``.  ``stack`` holds, for each page, its free slot indices in
    ``stack[page * objects : page * objects + page_nfree[page]]`` (top = next to allocate).
    Memoryviews (``*_mv``) give fast scalar access to the same buffers.
    """

    def __init__(self, objects: int, lru: bool, nr_pages: int = 4) -> None:
        self.objects = objects
        self.lru = lru
        self.nr_pages = 0  # capacity in pages
        self.free_pages: list[int] = []
        self.page_cache: NDArray[Any] = np.zeros(0, dtype=np.int32)
        self.page_inuse = np.zeros(0, dtype=np.int32)
        self.page_nfree = np.zeros(0, dtype=np.int32)
        self.page_state = np.zeros(0, dtype=np.int8)
        self.page_charge = np.zeros(0, dtype=np.int32)
        self.stack = np.zeros(0, dtype=np.int32)
        self.owner = np.zeros(0, dtype=np.int32)
        self.lru_next = np.zeros(0, dtype=np.int32)
        self.lru_prev = np.zeros(0, dtype=np.int32)
        self._grow(nr_pages)

    def _grow(self, nr_pages: int) -> None:
        old = self.nr_pages
        objs = self.objects

        def grown(a: NDArray[Any], n: int, fill: int) -> NDArray[Any]:
            b = np.full(n, fill, dtype=a.dtype)
            b[: len(a)] = a
            return b

        self.page_cache = grown(self.page_cache, nr_pages, -1)
        self.page_inuse = grown(self.page_inuse, nr_pages, 0)
        self.page_nfree = grown(self.page_nfree, nr_pages, 0)
        self.page_state = grown(self.page_state, nr_pages, PageState.UNUSED)
        self.page_charge = grown(self.page_charge, nr_pages, 0)
        self.stack = grown(self.stack, nr_pages * objs, 0)
        self.owner = grown(self.owner, nr_pages * objs, OWNER_FREE)
        if self.lru:
            self.lru_next = grown(self.lru_next, nr_pages * objs, -2)
            self.lru_prev = grown(self.lru_prev, nr_pages * objs, -2)
        self.nr_pages = nr_pages
        # Lowest page numbers first, so that a run reuses pages deterministically.
        self.free_pages.extend(range(nr_pages - 1, old - 1, -1))
        self.free_pages.sort(reverse=True)
        self._views()

    def _views(self) -> None:
        self.cache_mv: memoryview = self.page_cache.data
        self.inuse_mv: memoryview = self.page_inuse.data
        self.nfree_mv: memoryview = self.page_nfree.data
        self.state_mv: memoryview = self.page_state.data
        self.charge_mv: memoryview = self.page_charge.data
        self.stack_mv: memoryview = self.stack.data
        self.owner_mv: memoryview = self.owner.data
        self.lru_next_mv: memoryview = self.lru_next.data
        self.lru_prev_mv: memoryview = self.lru_prev.data

    def alloc_page(self) -> int:
        """A free page number (growing the arrays by half when none is left)."""
        if not self.free_pages:
            self._grow(max(4, self.nr_pages + self.nr_pages // 2 + 1))
        return self.free_pages.pop()

    def nbytes(self) -> int:
        """Bytes of model memory the arrays take."""
        arrays: list[NDArray[Any]] = [
            self.page_cache, self.page_inuse, self.page_nfree, self.page_state,
            self.page_charge, self.stack, self.owner, self.lru_next, self.lru_prev]
        return sum(int(a.nbytes) for a in arrays) + 8 * len(self.free_pages)


class MemcgCacheParams(KObject):
    """struct memcg_cache_params (embedded in struct kmem_cache): root cache link, memcg
    copies, and 5.3's lifecycle."""

    ktype = "struct memcg_cache_params"

    def __init__(self, owner: KmemCache) -> None:
        super().__init__()
        self.embed(owner, "memcg_params")
        #: NULL for a root cache
        self.root_cache: KmemCache | None = None
        #: the memcg a per-memcg copy belongs to (reparented in 5.3)
        self.memcg: MemCgroup | None = None
        #: root cache: memcg_caches[kmemcg_id] (the model's array is a dict)
        self.memcg_caches: dict[int, KmemCache] = {}
        #: 5.3: pages and the cache's own reference; release destroys a dying copy
        self.refcnt = PercpuRef(owner, "memcg_params.refcnt")
        #: 5.3: deactivated (its memcg went offline)
        self.dying = False
        #: the RFC's second set: the one copy every accounted allocation uses
        self.accounted: KmemCache | None = None
        #: 5.3: struct list_head kmem_caches_node, on memcg->kmem_caches
        self.kmem_caches_node = ListHead(owner, "memcg_params.kmem_caches_node")
        #: 5.3: deactivation and shutdown run after a grace period, then on a workqueue
        self.rcu_head = RcuHead(owner, "memcg_params.rcu_head")
        self.work = WorkStruct(owner, "memcg_params.work")
        self.work_fn: Any = None


class KmemCache(KObject):
    """struct kmem_cache (SLUB), root or per-memcg copy."""

    ktype = "struct kmem_cache"

    def __init__(self, k: Kernel, spec: CacheSpec, cid: int, name: str | None = None,
                 root: KmemCache | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.name = name or spec.name
        self.id = cid
        self.object_size = spec.object_size
        self.flags = spec.flags
        #: SLAB_RECLAIM_ACCOUNT and SLAB_ACCOUNT as plain bools (tested on every allocation)
        self.reclaimable = bool(spec.flags & SlabFlags.SLAB_RECLAIM_ACCOUNT)
        self.account = bool(spec.flags & SlabFlags.SLAB_ACCOUNT)
        align = spec.align
        if spec.flags & SlabFlags.SLAB_HWCACHE_ALIGN:
            align = max(align, 64)
        #: s->size: the object size rounded up to the alignment
        self.size = (spec.object_size + align - 1) // align * align
        self.order = calculate_order(self.size, k.nr_cpus, k.page_size)
        #: oo_objects(s->oo)
        self.objects = (k.page_size << self.order) // self.size
        #: s->min_partial: set_min_partial(s, ilog2(s->size) / 2)
        self.min_partial = min(MAX_PARTIAL, max(MIN_PARTIAL, _ilog2(self.size) // 2))
        self.page_bytes = k.page_size << self.order
        #: a copy shares its root cache's pages arrays
        self.arena: SlabArena = root.arena if root is not None else SlabArena(self.objects, spec.lru)
        #: kmem_cache_cpu.page per CPU (-1: none)
        self.cpu_slab = [-1] * k.nr_cpus
        #: kmem_cache_node.partial (page numbers, head first)
        self.partial: OrderedDict[int, None] = OrderedDict()
        self.nr_partial = 0
        self.nr_full = 0
        #: slabs of this cache (kmem_cache_node.nr_slabs)
        self.nr_slabs = 0
        #: objects in use
        self.nr_inuse = 0
        self.memcg_params = MemcgCacheParams(self)
        #: the list_lru of a reclaimable root cache (the superblock's LRU), shared by copies
        self.list_lru: ListLru | None = None
        #: destroyed (kmem_cache_destroy / shutdown_cache)
        self.destroyed = False

    def _klabel(self) -> str:
        return self.name

    @property
    def is_root_cache(self) -> bool:
        """is_root_cache()."""
        return self.memcg_params.root_cache is None

    @property
    def root(self) -> KmemCache:
        """memcg_root_cache()."""
        return self.memcg_params.root_cache or self


    def point(self, k: Kernel, what: str, kind: AccessKind = AccessKind.RMW) -> None:
        """A scheduling point on this cache's state (cpu slabs, node lists)."""
        k.access(self, what, kind)


class SlabGlobals:
    """The slab allocator's global state: caches and the ownership-handle table."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        #: every cache ever created, by id (index); destroyed ones stay, marked
        self.caches: list[KmemCache] = []
        self.by_name: dict[str, KmemCache] = {}
        #: handle -> model object (handle 0 is "nobody")
        self.owners: list[Any] = [None]
        #: slab pages allocated / freed since boot
        self.nr_pages_allocated = 0
        self.nr_pages_freed = 0
        #: pages in use now, and the peak (in 4 KiB pages), kept by new_slab/__free_slab
        self.pages_now = 0
        self.pages_peak = 0
        #: slab_mutex: cache creation, deactivation and destruction
        self.slab_mutex = Mutex("slab_mutex")
        k.heap.adopt(self.slab_mutex, "kmem_cache_init", static=True)
        k.heap.root_providers.append(self.referenced_owners)

    def referenced_owners(self) -> list[Any]:
        """Roots for the kmemleak scan: every cache not destroyed (slab_caches), and the
        owners some live slab object references."""
        out: list[Any] = [s for s in self.caches if not s.destroyed]
        seen: set[int] = set()
        for s in self.caches:
            if not s.is_root_cache or s.destroyed:
                continue
            a = s.arena
            hs = np.unique(a.owner[a.owner > 0])
            for h in hs.tolist():
                if h not in seen:
                    seen.add(h)
                    out.append(self.owners[h])
        return out


def kmem_cache_init(k: Kernel) -> None:
    """kmem_cache_init(): the slab allocator's state; caches are created when first used."""
    k.slab = SlabGlobals(k)


def slab_globals(k: Kernel) -> SlabGlobals:
    """The kernel's slab state (created with the first cache)."""
    g: SlabGlobals | None = getattr(k, "slab", None)
    if g is None:
        g = SlabGlobals(k)
        k.slab = g
    return g


def owner_handle(k: Kernel, obj: Any) -> int:
    """The ownership-vector handle of ``obj`` (a ptr, objcg or memcg), assigned on first use."""
    h: int | None = obj.__dict__.get("_kslab_handle")
    if h is None:
        g = k.slab
        h = len(g.owners)
        g.owners.append(obj)
        obj._kslab_handle = h
    return h


def owner_object(k: Kernel, handle: int) -> Any:
    """The model object an ownership-vector handle stands for (None for 0)."""
    return k.slab.owners[handle]


def kmem_cache_create(k: Kernel, spec: CacheSpec, *, root: KmemCache | None = None,
                      name: str | None = None) -> KmemCache:
    """kmem_cache_create() / memcg_create_kmem_cache()'s create_cache(): a root cache, or a
    copy of ``root`` that shares its arena (and its list_lru)."""
    g = slab_globals(k)
    s = KmemCache(k, spec, len(g.caches), name, root)
    if root is None:
        if spec.lru:
            from memcgsim.mm.list_lru import ListLru
            from memcgsim.mm.vmscan import LruCacheShrinker, register_shrinker

            s.list_lru = ListLru(k, s)
            register_shrinker(k, LruCacheShrinker(s.list_lru))
        g.by_name[s.name] = s
    else:
        s.memcg_params.root_cache = root
        s.list_lru = root.list_lru
    k.heap.adopt(s, "kmem_cache_create", static=root is None)
    g.caches.append(s)
    return s


def kmem_cache_by_name(k: Kernel, name: str) -> KmemCache:
    """The root cache called ``name``, created on first use; KeyError naming the known ones."""
    g = slab_globals(k)
    s = g.by_name.get(name)
    if s is not None:
        return s
    spec = CACHE_SPECS.get(name)
    if spec is None:
        known = ", ".join(sorted(CACHE_SPECS))
        raise KeyError(f"unknown cache {name!r} (known: {known})")
    return kmem_cache_create(k, spec)
