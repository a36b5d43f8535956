"""The memory controller (mm/memcontrol.c, include/linux/memcontrol.h) around 5.3, with the seed.

The seed, "[PATCH RFC 02/14] mm: memcg: introduce mem_cgroup_ptr", is here function by function
under its own names: :class:`MemCgroupPtr`, :func:`mem_cgroup_ptr_tryget`,
:func:`mem_cgroup_ptr_get`, :func:`mem_cgroup_ptr_put`, :func:`mem_cgroup_get_kmem_ptr`,
:func:`memcg_ptr_release`, :func:`memcg_init_kmem_memcg_ptr` and
:func:`memcg_reparent_kmem_memcg_ptr`, called from :func:`memcg_online_kmem`,
:func:`memcg_offline_kmem` and :func:`mem_cgroup_alloc` exactly where the patch adds them.
Charging follows the series' "[PATCH RFC 01/14] mm: memcg: subpage charging API": objects are
charged in bytes through a per-cpu byte stock, pages through the 5.3 page stock.

Model simplifications: cgroup v2 only (use_hierarchy, no memsw/kmem/tcpmem counters); one NUMA
node, so no per-node lruvec statistics; no swap, socket or writeback accounting; reclaim and
OOM are hooks (:attr:`MemcgGlobals.reclaim`) that later layers fill in, and a charge that
still does not fit fails with -ENOMEM instead of invoking the OOM killer.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from memcgsim.cgroup.cgroup import (
    CSS_DYING,
    CSS_NO_REF,
    CSS_ONLINE,
    CgroupSubsys,
    CgroupSubsysState,
    CssSet,
    css_children,
    css_get,
    css_get_many,
    css_put,
    css_put_many,
    css_refcount,
    css_tryget,
    css_tryget_online,
)
from memcgsim.kernel.errno import ENOMEM
from memcgsim.kernel.heap import (
    GFP_KERNEL,
    Gfp,
    alloc_percpu_struct,
    free_percpu,
    kfree,
    kfree_rcu,
    kmalloc,
    kzalloc,
)
from memcgsim.kernel.idr import Ida
from memcgsim.kernel.list import (
    INIT_LIST_HEAD,
    ListHead,
    list_add,
    list_del,
    list_entries,
    list_for_each_entry,
    list_splice,
)
from memcgsim.kernel.locking import (
    Mutex,
    local_irq_restore,
    local_irq_save,
    mutex_trylock,
    mutex_unlock,
    preempt_disable,
    preempt_enable,
    spin_lock_irq,
    spin_lock_irqsave,
    spin_unlock_irq,
    spin_unlock_irqrestore,
)
from memcgsim.kernel.objects import KObject, LazyMember
from memcgsim.kernel.percpu_ref import (
    PercpuRef,
    percpu_ref_exit,
    percpu_ref_get,
    percpu_ref_init,
    percpu_ref_kill,
    percpu_ref_put,
    percpu_ref_read,
    percpu_ref_tryget,
)
from memcgsim.kernel.rcu import (
    RcuHead,
    rcu_assign_pointer,
    rcu_dereference,
    rcu_read_lock,
    rcu_read_unlock,
    rcu_swap_protected,
)
from memcgsim.kernel.task import AccessKind, Context
from memcgsim.kernel.violations import ViolationKind
from memcgsim.kernel.workqueue import Workqueue, WorkStruct, alloc_workqueue, queue_work_on
from memcgsim.mm.page_counter import (
    PAGE_COUNTER_MAX,
    PageCounter,
    page_counter_charge,
    page_counter_init,
    page_counter_read,
    page_counter_try_charge,
    page_counter_uncharge,
)

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.task import Task

__all__ = [
    "KmemState",
    "MemCgroup",
    "MemCgroupPtr",
    "MemcgGlobals",
    "MemcgStat",
    "MemoryCgrpSubsys",
    "get_mem_cgroup_from_current",
    "get_mem_cgroup_from_ptr",
    "mem_cgroup_from_css",
    "mem_cgroup_get_kmem_ptr",
    "mem_cgroup_ptr_get",
    "mem_cgroup_ptr_put",
    "mem_cgroup_ptr_tryget",
    "memcg_init_kmem_memcg_ptr",
    "memcg_offline_kmem",
    "memcg_online_kmem",
    "memcg_page_state",
    "memcg_ptr_release",
    "memcg_reparent_kmem_memcg_ptr",
    "memory_current_bytes",
    "parent_mem_cgroup",
    "try_charge",
]

#: MEMCG_CHARGE_BATCH (pages): per-cpu stock size and vmstat batching threshold
MEMCG_CHARGE_BATCH = 32
#: MEM_CGROUP_RECLAIM_RETRIES
MEM_CGROUP_RECLAIM_RETRIES = 5
#: MEMCG_CACHES_MIN_SIZE
MEMCG_CACHES_MIN_SIZE = 4


#: enum members as module constants (AccessKind.X is a slow metaclass lookup)
_READ = AccessKind.READ
_RMW = AccessKind.RMW
_SOFTIRQ = Context.SOFTIRQ


class MemcgStat(enum.IntEnum):
    """The memcg_stat_item / node_stat_item entries the model tracks (memory.stat)."""

    #: slab counters are in bytes, as "[PATCH RFC 04/14] mm: vmstat: convert slab vmstat
    #: counter to bytes" makes them
    NR_SLAB_RECLAIMABLE = 0
    NR_SLAB_UNRECLAIMABLE = 1
    MEMCG_KERNEL_STACK_KB = 2
    MEMCG_SOCK = 3
    MEMCG_PERCPU_B = 4
    #: kernel allocations charged as whole pages, outside slab (5.9's MEMCG_KMEM)
    MEMCG_KMEM = 5


#: items counted in bytes; the batching threshold scales by PAGE_SIZE for them
MEMCG_STAT_IN_BYTES = frozenset({MemcgStat.NR_SLAB_RECLAIMABLE, MemcgStat.NR_SLAB_UNRECLAIMABLE,
                                 MemcgStat.MEMCG_PERCPU_B})
MEMCG_NR_STAT = len(MemcgStat)


class MemcgEvent(enum.IntEnum):
    """enum memcg_memory_event (memory.events)."""

    MEMCG_LOW = 0
    MEMCG_HIGH = 1
    MEMCG_MAX = 2
    MEMCG_OOM = 3
    MEMCG_OOM_KILL = 4
    MEMCG_OOM_GROUP_KILL = 5


#: len(MemcgEvent), once (an enum's len() is slow and memcgs are built per explored run)
MEMCG_NR_MEMORY_EVENTS = len(MemcgEvent)


class KmemState(enum.IntEnum):
    """enum memcg_kmem_state."""

    KMEM_NONE = 0
    KMEM_ALLOCATED = 1
    KMEM_ONLINE = 2


_KMEM_NONE = KmemState.KMEM_NONE


class MemcgVmstatsPercpu(KObject):
    """struct memcg_vmstats_percpu, one stat array per CPU."""

    ktype = "struct memcg_vmstats_percpu"

    def __init__(self, nr_cpus: int) -> None:
        super().__init__()
        self.stat = [[0] * MEMCG_NR_STAT for _ in range(nr_cpus)]


class MemCgroupId(KObject):
    """struct mem_cgroup_id: the memcg's id and the references pinning it."""

    ktype = "struct mem_cgroup_id"

    def __init__(self, owner: KObject) -> None:
        super().__init__()
        self.embed(owner, "id")
        self.id = 0
        #: refcount_t ref
        self.ref = 0


class MemCgroup(CgroupSubsysState):
    """struct mem_cgroup (its css is the embedded struct cgroup_subsys_state)."""

    ktype = "struct mem_cgroup"
    #: sizeof(struct mem_cgroup) on a 2-node 5.3 x86_64 build is about 2-3 KB; with the
    #: per-node info it lands in kmalloc-4k
    ksize = 4096

    # Made on first use (see CgroupSubsysState).
    memcg_id: LazyMember[MemCgroupId] = LazyMember(MemCgroupId)
    kmem_caches: LazyMember[ListHead] = LazyMember(lambda m: ListHead(m, "kmem_caches"))
    #: 5.9+ (objcg design): struct list_head objcg_list, reparented objcgs (css_set_lock)
    objcg_list: LazyMember[ListHead] = LazyMember(lambda m: ListHead(m, "objcg_list"))

    def __init__(self, nr_cpus: int = 1) -> None:
        super().__init__()
        self.memory = PageCounter(self, "memory")
        self.high = PAGE_COUNTER_MAX
        #: memory.oom.group (5.0+): the OOM killer takes the whole cgroup
        self.oom_group = False
        self.use_hierarchy = True
        self.vmstats = [0] * MEMCG_NR_STAT
        self.vmstats_local: MemcgVmstatsPercpu | None = None
        self.vmstats_percpu: MemcgVmstatsPercpu | None = None
        #: memory.events: this memcg's and its descendants' events (hierarchical)
        self.memory_events = [0] * MEMCG_NR_MEMORY_EVENTS
        #: memory.events.local: this memcg's own events (5.2+)
        self.memory_events_local = [0] * MEMCG_NR_MEMORY_EVENTS
        self.kmemcg_id = -1
        self.kmem_state = _KMEM_NONE
        #: seed: struct mem_cgroup_ptr __rcu *kmem_memcg_ptr
        self.kmem_memcg_ptr: MemCgroupPtr | None = None
        #: seed: struct list_head kmem_memcg_ptr_list, protected by css_set_lock
        self.kmem_memcg_ptr_list = ListHead(self, "kmem_memcg_ptr_list")
        #: RFC 01/14: atomic_t nr_stocked_bytes, sub-page leftovers of drained byte stocks
        self.nr_stocked_bytes = 0
        #: model bookkeeping: nr_stocked_bytes of freed descendants, still charged here
        self._kstranded_bytes = 0
        #: 5.9+ (objcg design): struct obj_cgroup __rcu *objcg
        self.objcg: Any = None
        #: model bookkeeping: the objcg (and its reference) this memcg's per-cpu statistics
        #: were charged through (the percpu chunk's obj_cgroups[] entry), 5.9+
        self._kpercpu_objcg: Any = None


def mem_cgroup_from_css(css: CgroupSubsysState | None) -> MemCgroup | None:
    """mem_cgroup_from_css(): container_of(css, struct mem_cgroup, css)."""
    assert css is None or isinstance(css, MemCgroup)
    return css


def parent_mem_cgroup(memcg: MemCgroup) -> MemCgroup | None:
    """parent_mem_cgroup(): mem_cgroup_from_css(memcg->css.parent)."""
    return mem_cgroup_from_css(memcg.parent)


def mem_cgroup_is_root(k: Kernel, memcg: MemCgroup) -> bool:
    return memcg is k.memcg.root_mem_cgroup


def mem_cgroup_is_descendant(memcg: MemCgroup, root: MemCgroup) -> bool:
    """mem_cgroup_is_descendant(): ``memcg`` is ``root`` or below it (cgroup v2)."""
    m: MemCgroup | None = memcg
    while m is not None:
        if m is root:
            return True
        m = parent_mem_cgroup(m)
    return False


# ====================================================================== the seed: mem_cgroup_ptr
class MemCgroupPtr(KObject):
    """struct mem_cgroup_ptr: a pointer to a memcg with a built-in reference counter.

    ``list`` and ``rcu`` are a union: queueing ``rcu`` for kfree_rcu() overwrites ``list``.
    """

    ktype = "struct mem_cgroup_ptr"
    #: percpu_ref (4 words) + memcg pointer + union of list_head / rcu_head (2 words)
    ksize = 56
    kfields = ("refcnt", "memcg", "list")

    def __init__(self) -> None:
        super().__init__()
        self.refcnt = PercpuRef(self, "refcnt")
        self.memcg: MemCgroup | None = None
        self.list = ListHead(self, "list")
        self.rcu = RcuHead(self, "rcu", union=self.list)

    def _klabel(self) -> str:
        m = self.memcg
        if isinstance(m, MemCgroup) and m.cgroup is not None:
            from memcgsim.cgroup.cgroup import cgroup_path

            return "->" + cgroup_path(m.cgroup)
        return ""


def mem_cgroup_ptr_tryget(k: Kernel, ptr: MemCgroupPtr) -> bool:
    """mem_cgroup_ptr_tryget(): percpu_ref_tryget(&ptr->refcnt)."""
    return percpu_ref_tryget(k, ptr.refcnt)


def mem_cgroup_ptr_get(k: Kernel, ptr: MemCgroupPtr | None) -> None:
    """mem_cgroup_ptr_get(): percpu_ref_get(&ptr->refcnt)."""
    if ptr is None:
        k.report(ViolationKind.BAD_POINTER,
                 "BUG: kernel NULL pointer dereference in mem_cgroup_ptr_get()")
        return
    percpu_ref_get(k, ptr.refcnt)


def mem_cgroup_ptr_put(k: Kernel, ptr: MemCgroupPtr | None) -> None:
    """mem_cgroup_ptr_put(): percpu_ref_put(&ptr->refcnt)."""
    if ptr is None:
        k.report(ViolationKind.BAD_POINTER,
                 "BUG: kernel NULL pointer dereference in mem_cgroup_ptr_put()")
        return
    percpu_ref_put(k, ptr.refcnt)


def mem_cgroup_get_kmem_ptr(k: Kernel, memcg: MemCgroup) -> MemCgroupPtr | None:
    """mem_cgroup_get_kmem_ptr(): a referenced kmem ptr of ``memcg`` or its nearest ancestor.

    Under rcu_read_lock(), dereference memcg->kmem_memcg_ptr and take the first one whose
    tryget succeeds, walking up the parents.  NULL means the root (which has no ptr: its
    css_alloc returns before memcg_online_kmem).  tryget succeeds on a killed ptr whose count
    is not yet zero.
    """
    ptr: MemCgroupPtr | None = None
    m: MemCgroup | None = memcg
    rcu_read_lock(k)
    while m is not None:
        ptr = rcu_dereference(k, m, "kmem_memcg_ptr")
        if ptr is not None and mem_cgroup_ptr_tryget(k, ptr):
            break
        m = parent_mem_cgroup(m)
    rcu_read_unlock(k)
    return ptr


def memcg_ptr_release(k: Kernel, ref: PercpuRef) -> None:
    """memcg_ptr_release(): the ptr's percpu_ref release, possibly in RCU-callback context.

    Unlink from whichever memcg's list holds it (under css_set_lock, irqsave), drop the
    reference the ptr holds on the memcg it points to now, and free it after a grace period.
    """
    ptr = ref._kowner
    assert isinstance(ptr, MemCgroupPtr)
    g = k.cgroup
    flags = spin_lock_irqsave(k, g.css_set_lock)
    list_del(k, ptr.list)
    spin_unlock_irqrestore(k, g.css_set_lock, flags)
    memcg = k.load(ptr, "memcg")
    if k.tracing:
        k.trace("memcg_ptr_release", ptr.kname())
    mem_cgroup_put(k, memcg)
    percpu_ref_exit(k, ref)
    kfree_rcu(k, ptr, "rcu")


def memcg_init_kmem_memcg_ptr(k: Kernel, memcg: MemCgroup) -> int:
    """memcg_init_kmem_memcg_ptr(): allocate, init and publish the memcg's kmem ptr.

    Returns 0, or -ENOMEM when the kmalloc() or the percpu_ref_init() fails (the ptr is then
    freed).  The ptr takes no css reference here: the css refcount does not exist yet
    (css_alloc runs before css refcount init); memcg_reparent_kmem_memcg_ptr() takes it.
    """
    kmem_memcg_ptr = kmalloc(k, MemCgroupPtr, gfp=GFP_KERNEL)
    if kmem_memcg_ptr is None:
        return -ENOMEM
    # The release is the design's memcg_ptr_release (a mutant may replace it).
    release = getattr(k.design, "memcg_ptr_release", memcg_ptr_release)
    ret = percpu_ref_init(k, kmem_memcg_ptr.refcnt, release, 0, GFP_KERNEL)
    if ret:
        kfree(k, kmem_memcg_ptr)
        return ret
    k.store(kmem_memcg_ptr, "memcg", memcg)
    INIT_LIST_HEAD(k, kmem_memcg_ptr.list)
    rcu_assign_pointer(k, memcg, "kmem_memcg_ptr", kmem_memcg_ptr)
    list_add(k, kmem_memcg_ptr.list, memcg.kmem_memcg_ptr_list)
    return 0


def memcg_reparent_kmem_memcg_ptr(k: Kernel, memcg: MemCgroup, parent: MemCgroup) -> None:
    """memcg_reparent_kmem_memcg_ptr(): unpublish and kill the memcg's ptr, repoint every
    ptr on its list (its own and those inherited from removed children) to ``parent``, splice
    the list into the parent's, and move that many css references from memcg to parent.

    Work is O(ptrs on the list), independent of how many objects reference them.
    """
    g = k.cgroup
    nr_reparented = 0
    memcg_ptr = rcu_swap_protected(k, memcg, "kmem_memcg_ptr", None, True)
    assert memcg_ptr is not None
    percpu_ref_kill(k, memcg_ptr.refcnt)
    # kmem_memcg_ptr is initialized before css refcounter, so until now it doesn't hold a
    # reference to the memcg.  Bump it here.
    css_get(k, memcg)
    spin_lock_irq(k, g.css_set_lock)
    for ptr in list_for_each_entry(k, memcg.kmem_memcg_ptr_list):
        k.xchg(ptr, "memcg", parent)
        nr_reparented += 1
    if nr_reparented:
        list_splice(k, memcg.kmem_memcg_ptr_list, parent.kmem_memcg_ptr_list)
    spin_unlock_irq(k, g.css_set_lock)
    k.memcg.reparent_log.append(nr_reparented)
    if k.tracing:
        k.trace("memcg_reparent_kmem_memcg_ptr", _memcg_path(memcg), "->", _memcg_path(parent),
                f"nr={nr_reparented}")
    if nr_reparented:
        css_get_many(k, parent, nr_reparented)
        css_put_many(k, memcg, nr_reparented)


def _changed(ptr: MemCgroupPtr, memcg: MemCgroup) -> Callable[[], bool]:
    return lambda: ptr.memcg is not memcg


def get_mem_cgroup_from_ptr(k: Kernel, ptr: MemCgroupPtr) -> MemCgroup:
    """The memcg a mem_cgroup_ptr points to, with a css reference the caller must put.

    Under rcu_read_lock(), read ptr->memcg and css_tryget() it, retrying until the tryget
    succeeds: a reparenting may leave the read value dying with a zero count, and the retry
    then finds the parent it was repointed to.  The seed's series has no such helper yet
    (its charge path, RFC 10/14, is not in the index); this is the loop 5.9's obj_cgroup
    uses (get_mem_cgroup_from_objcg(), obj_cgroup_charge()), which a plain css_get() would
    break (eefbfa7fd678).

    Model simplification: after a failed tryget the task spins on its CPU until ptr->memcg
    changes (the only thing that can make the retry succeed) instead of re-reading in a
    loop: the same outcomes, without unboundedly long schedules.
    """
    rcu_read_lock(k)
    while True:
        memcg = k.load(ptr, "memcg")
        if css_tryget(k, memcg):
            break
        k.wait_event(_changed(ptr, memcg), "get_mem_cgroup_from_ptr() retry", sleep=False)
    rcu_read_unlock(k)
    assert isinstance(memcg, MemCgroup)
    return memcg


def mem_cgroup_put(k: Kernel, memcg: MemCgroup | None) -> None:
    """mem_cgroup_put(): css_put() unless NULL."""
    if memcg is not None:
        css_put(k, memcg)


# ====================================================================== globals and ids
class MemcgStockPcp(KObject):
    """struct memcg_stock_pcp: this CPU's cached charge (5.3 pages + RFC 01/14 bytes)."""

    ktype = "struct memcg_stock_pcp"

    def __init__(self, cpu: int) -> None:
        super().__init__()
        self.cpu = cpu
        self.cached: MemCgroup | None = None
        self.nr_pages = 0
        #: RFC 01/14: the memcg whose bytes are stocked (holds a css reference on it)
        self.subpage_cached: MemCgroup | None = None
        self.nr_bytes = 0
        self.work = WorkStruct(self, "work", drain_local_stock)
        #: FLUSHING_CACHED_CHARGE
        self.flushing = False


ReclaimFn = Callable[["Kernel", MemCgroup, int, int], int]


class MemcgGlobals:
    """Memcg's global state: root_mem_cgroup, id spaces, per-cpu stocks, static keys."""

    def __init__(self, k: Kernel) -> None:
        cfg = k.config
        self.root_mem_cgroup: MemCgroup | None = None
        self.memcg_cache_ida = Ida("memcg_cache_ida")
        self.mem_cgroup_idr = Ida("mem_cgroup_idr")
        k.heap.adopt(self.memcg_cache_ida, "mem_cgroup_init", static=True)
        k.heap.adopt(self.mem_cgroup_idr, "mem_cgroup_init", static=True)
        #: memcg_nr_cache_ids: size of the per-cache memcg arrays; grows, never shrinks
        self.memcg_nr_cache_ids = MEMCG_CACHES_MIN_SIZE
        #: MEMCG_CACHES_MAX_SIZE, the kmemcg id space
        self.memcg_caches_max_size = cfg.kmemcg_id_max
        self.mem_cgroup_id_max = cfg.mem_cgroup_id_max
        self.memcg_kmem_enabled_key = 0
        self.stocks = [MemcgStockPcp(c) for c in range(k.nr_cpus)]
        for st in self.stocks:
            k.heap.adopt(st, "mem_cgroup_init", static=True)
        self.percpu_charge_mutex = Mutex("percpu_charge_mutex")
        k.heap.adopt(self.percpu_charge_mutex, "mem_cgroup_init", static=True)
        self.system_wq: Workqueue = alloc_workqueue(k, "events")
        #: try_to_free_mem_cgroup_pages(): pages reclaimed; None until reclaim exists
        self.reclaim: ReclaimFn | None = None
        #: nr_reparented of each memcg_reparent_kmem_memcg_ptr() call, for reports
        self.reparent_log: list[int] = []
        #: 5.3 flushes slab vmstats at kmem offline without zeroing them (fixed in 5.4)
        self.flush_slab_vmstats_at_offline = True
        #: bytes left charged by freed memcgs' nr_stocked_bytes (see mem_cgroup_free)
        self.stranded_bytes_total = 0
        #: other holders of css references, for check_memcg_refs (designs, scenarios)
        self.extra_css_refs: list[Callable[[Kernel, MemCgroup], int]] = []
        #: other charged bytes, for check_memcg_conservation (page-charged objects...)
        self.extra_charged_bytes: list[Callable[[Kernel, MemCgroup], int]] = []
        #: the same two, computed for every memcg at once: {id(memcg): n} (slab designs)
        self.extra_css_refs_map: list[Callable[[Kernel], dict[int, int]]] = []
        self.extra_charged_bytes_map: list[Callable[[Kernel], dict[int, int]]] = []
        #: references on mem_cgroup_ptrs held outside heap objects: {id(ptr): n} (slab pages)
        self.extra_ptr_refs_map: list[Callable[[Kernel], dict[int, int]]] = []
        #: memory_cgrp_id: the memory controller's subsystem id (set by cgroup_init)
        self.memory_cgrp_id = 0
        #: 5.10's per-cpu object stocks (memcgsim.mm.objcg), when the design uses them
        self.obj_stocks: list[Any] = []
        #: list_lrus (mm/list_lru.c): every memcg-aware list_lru, drained at kmem offline
        self.list_lrus: list[Any] = []


def memcg_alloc_cache_id(k: Kernel) -> int:
    """memcg_alloc_cache_id(): a kmemcg id from the bounded ida, growing the cache arrays."""
    g = k.memcg
    cid = g.memcg_cache_ida.alloc(k, 0, g.memcg_caches_max_size)
    if cid < 0:
        return cid
    if cid < g.memcg_nr_cache_ids:
        return cid
    size = min(max(2 * (cid + 1), MEMCG_CACHES_MIN_SIZE), g.memcg_caches_max_size)
    # memcg_update_all_caches() and memcg_update_all_list_lrus() reallocate arrays.
    if k.faults.should_fail("slab", "memcg_update_all_caches", "memcg_caches"):
        g.memcg_cache_ida.remove(k, cid)
        return -ENOMEM
    g.memcg_nr_cache_ids = size
    return cid


def memcg_free_cache_id(k: Kernel, cid: int) -> None:
    """memcg_free_cache_id()."""
    k.memcg.memcg_cache_ida.remove(k, cid)


def mem_cgroup_id_remove(k: Kernel, memcg: MemCgroup) -> None:
    """mem_cgroup_id_remove()."""
    if memcg.memcg_id.id > 0:
        k.memcg.mem_cgroup_idr.remove(k, memcg.memcg_id.id)
        memcg.memcg_id.id = 0


def mem_cgroup_id_put_many(k: Kernel, memcg: MemCgroup, n: int) -> None:
    """mem_cgroup_id_put_many(): the last id reference removes the id and puts the css."""
    _, new = k.rmw(memcg.memcg_id, "ref", lambda r: r - n)
    if new < 0:
        k.report(ViolationKind.REFCOUNT_UNDERFLOW, f"refcount_t underflow on {memcg.memcg_id.kname()}")
    if new == 0:
        mem_cgroup_id_remove(k, memcg)
        css_put(k, memcg)


def mem_cgroup_id_put(k: Kernel, memcg: MemCgroup) -> None:
    mem_cgroup_id_put_many(k, memcg, 1)


# ====================================================================== lifecycle
def mem_cgroup_alloc(k: Kernel) -> MemCgroup | None:
    """mem_cgroup_alloc(): the struct, its id (1..MEM_CGROUP_ID_MAX-1) and per-cpu stats."""
    g = k.memcg
    memcg = kzalloc(k, MemCgroup, k.nr_cpus)
    if memcg is None:
        return None
    mid = g.mem_cgroup_idr.alloc(k, 1, g.mem_cgroup_id_max)
    if mid < 0:
        __mem_cgroup_free(k, memcg)
        return None
    memcg.memcg_id.id = mid
    memcg.vmstats_local = alloc_percpu_struct(k, MemcgVmstatsPercpu, k.nr_cpus)
    if memcg.vmstats_local is None:
        mem_cgroup_id_remove(k, memcg)
        __mem_cgroup_free(k, memcg)
        return None
    memcg.vmstats_percpu = alloc_percpu_struct(k, MemcgVmstatsPercpu, k.nr_cpus)
    if memcg.vmstats_percpu is None:
        mem_cgroup_id_remove(k, memcg)
        __mem_cgroup_free(k, memcg)
        return None
    memcg.kmemcg_id = -1
    # seed: INIT_LIST_HEAD(&memcg->kmem_memcg_ptr_list)
    INIT_LIST_HEAD(k, memcg.kmem_memcg_ptr_list)
    return memcg


def __mem_cgroup_free(k: Kernel, memcg: MemCgroup) -> None:
    """__mem_cgroup_free(): free the per-cpu stats and the struct."""
    free_percpu(k, memcg.vmstats_percpu)  # type: ignore[arg-type]
    free_percpu(k, memcg.vmstats_local)  # type: ignore[arg-type]
    kfree(k, memcg)


def mem_cgroup_free(k: Kernel, memcg: MemCgroup) -> None:
    """mem_cgroup_free(): flush every per-cpu stat into the ancestors, then free.

    RFC 01/14 keeps a drained byte stock's sub-page remainder in ``nr_stocked_bytes`` and
    nothing hands it on when the memcg goes away: those bytes stay charged to the ancestors'
    page counters for good.  The model records them as *stranded* on the parent (bookkeeping
    only, for the conservation check and reports), passing them up if the parent goes too.
    """
    stranded = memcg.nr_stocked_bytes + memcg._kstranded_bytes
    parent = parent_mem_cgroup(memcg)
    if stranded and parent is not None:
        parent._kstranded_bytes += stranded
        k.memcg.stranded_bytes_total += memcg.nr_stocked_bytes
        k.trace("stranded_charge", _memcg_path(memcg), f"bytes={memcg.nr_stocked_bytes}")
    memcg_flush_percpu_vmstats(k, memcg, slab_only=False)
    __mem_cgroup_free(k, memcg)


def mem_cgroup_css_alloc(k: Kernel, parent_css: CgroupSubsysState | None
                         ) -> CgroupSubsysState | int:
    """mem_cgroup_css_alloc(): allocate; for a non-root memcg bring kmem online here."""
    parent = mem_cgroup_from_css(parent_css)
    memcg = mem_cgroup_alloc(k)
    if memcg is None:
        return -ENOMEM
    memcg.high = PAGE_COUNTER_MAX
    if parent is not None:
        memcg.use_hierarchy = True
        page_counter_init(memcg.memory, parent.memory)
    else:
        page_counter_init(memcg.memory, None)
    # The following stuff does not apply to the root.
    if parent is None:
        INIT_LIST_HEAD(k, memcg.kmem_caches)
        k.memcg.root_mem_cgroup = memcg
        return memcg
    error = memcg_online_kmem(k, memcg)
    if error:
        mem_cgroup_id_remove(k, memcg)
        mem_cgroup_free(k, memcg)
        return error
    return memcg


def mem_cgroup_css_online(k: Kernel, css: CgroupSubsysState) -> int:
    """mem_cgroup_css_online(): the online state pins the memcg id, the id pins the css."""
    memcg = mem_cgroup_from_css(css)
    assert memcg is not None
    if css.flags & CSS_NO_REF:
        return 0
    # memcg_alloc_shrinker_maps()
    if k.faults.should_fail("slab", "memcg_alloc_shrinker_maps", "memcg_shrinker_map"):
        mem_cgroup_id_remove(k, memcg)
        return -ENOMEM
    k.store(memcg.memcg_id, "ref", 1)
    css_get(k, css)
    return 0


def mem_cgroup_css_offline(k: Kernel, css: CgroupSubsysState) -> None:
    """mem_cgroup_css_offline(): kmem offline (reparenting), drain stocks, put the id."""
    memcg = mem_cgroup_from_css(css)
    assert memcg is not None
    memcg_offline_kmem(k, memcg)
    drain_all_stock(k, memcg)
    mem_cgroup_id_put(k, memcg)


def mem_cgroup_css_free(k: Kernel, css: CgroupSubsysState) -> None:
    """mem_cgroup_css_free(): kmem teardown (offline if it never happened), then free."""
    memcg = mem_cgroup_from_css(css)
    assert memcg is not None
    memcg_free_kmem(k, memcg)
    mem_cgroup_free(k, memcg)


def memcg_online_kmem(k: Kernel, memcg: MemCgroup) -> int:
    """memcg_online_kmem(): a kmemcg id, then (seed) the kmem ptr; 0 or a negative errno."""
    if k.config.nokmem:
        return 0
    assert memcg.kmemcg_id < 0 and memcg.kmem_state is KmemState.KMEM_NONE
    memcg_id = memcg_alloc_cache_id(k)
    if memcg_id < 0:
        return memcg_id
    # seed: memcg_init_kmem_memcg_ptr(), through the design
    ret = k.design.online_kmem(k, memcg)
    if ret:
        memcg_free_cache_id(k, memcg_id)
        return ret
    k.memcg.memcg_kmem_enabled_key += 1
    # A memory cgroup is considered kmem-online as soon as it gets a kmemcg_id.
    memcg.kmemcg_id = memcg_id
    memcg.kmem_state = KmemState.KMEM_ONLINE
    INIT_LIST_HEAD(k, memcg.kmem_caches)
    return 0


def memcg_offline_kmem(k: Kernel, memcg: MemCgroup) -> None:
    """memcg_offline_kmem(): reparent kmem (caches, then the seed's ptrs), flush slab
    vmstats, hand the kmemcg id of the memcg and its descendants to the parent, drain
    list_lrus into the parent, free the id."""
    if k.load(memcg, "kmem_state") is not KmemState.KMEM_ONLINE:
        return
    # Clear the online state before clearing memcg_caches array entries.
    k.store(memcg, "kmem_state", KmemState.KMEM_ALLOCATED)
    parent = parent_mem_cgroup(memcg)
    if parent is None:
        parent = k.memcg.root_mem_cgroup
    assert parent is not None
    # memcg_deactivate_kmem_caches() (5.3) and the seed's memcg_reparent_kmem_memcg_ptr():
    # whatever reparenting the design does.
    k.design.offline_kmem(k, memcg, parent)
    if k.memcg.flush_slab_vmstats_at_offline:
        memcg_flush_percpu_vmstats(k, memcg, slab_only=True)
    kmemcg_id = memcg.kmemcg_id
    if kmemcg_id < 0:
        k.report(ViolationKind.BUG, f"kernel BUG: kmemcg_id {kmemcg_id} of {memcg.kname()} < 0")
    rcu_read_lock(k)
    for child in _css_descendants_pre(memcg):
        if child.kmemcg_id != kmemcg_id:
            k.report(ViolationKind.BUG,
                     f"kernel BUG: {child.kname()} kmemcg_id {child.kmemcg_id} != {kmemcg_id}")
        k.store(child, "kmemcg_id", parent.kmemcg_id)
    rcu_read_unlock(k)
    memcg_drain_all_list_lrus(k, kmemcg_id, parent)
    memcg_free_cache_id(k, kmemcg_id)


def memcg_drain_all_list_lrus(k: Kernel, src_idx: int, dst_memcg: MemCgroup) -> None:
    """memcg_drain_all_list_lrus(): splice every list_lru's list of kmemcg id ``src_idx``
    into ``dst_memcg``'s (mm/list_lru.c)."""
    from memcgsim.mm.list_lru import memcg_drain_all_list_lrus as drain

    drain(k, src_idx, dst_memcg)


def memcg_free_kmem(k: Kernel, memcg: MemCgroup) -> None:
    """memcg_free_kmem(): a css_alloc()ed memcg whose creation failed never went offline."""
    if memcg.kmem_state is KmemState.KMEM_ONLINE:
        memcg_offline_kmem(k, memcg)
    if memcg.kmem_state is KmemState.KMEM_ALLOCATED:
        # 4.x: memcg_destroy_kmem_caches() here; whatever the design frees at css_free.
        k.design.free_kmem(k, memcg)
        k.memcg.memcg_kmem_enabled_key -= 1


def _css_descendants_pre(memcg: MemCgroup) -> list[MemCgroup]:
    """css_for_each_descendant_pre(): memcg first, then its subtree."""
    out: list[MemCgroup] = []
    stack: list[CgroupSubsysState] = [memcg]
    while stack:
        css = stack.pop()
        assert isinstance(css, MemCgroup)
        out.append(css)
        stack.extend(reversed(css_children(css)))
    return out


def _memcg_path(memcg: MemCgroup | None) -> str:
    from memcgsim.cgroup.cgroup import cgroup_path

    if memcg is None:
        return "NULL"
    return cgroup_path(memcg.cgroup) if memcg.cgroup is not None else memcg.kname()


class MemoryCgrpSubsys(CgroupSubsys):
    """memory_cgrp_subsys."""

    name = "memory"
    #: the set memcgsim.cgroupfs serves (memory_files[] of 6.1 without numa_stat and swap)
    files = (
        "memory.current", "memory.peak", "memory.min", "memory.low", "memory.high",
        "memory.max", "memory.events", "memory.events.local", "memory.stat",
        "memory.oom.group", "memory.reclaim",
    )

    def css_alloc(self, k: Kernel, parent_css: CgroupSubsysState | None
                  ) -> CgroupSubsysState | int:
        k.memcg.memory_cgrp_id = self.id
        return mem_cgroup_css_alloc(k, parent_css)

    def css_online(self, k: Kernel, css: CgroupSubsysState) -> int:
        return mem_cgroup_css_online(k, css)

    def css_offline(self, k: Kernel, css: CgroupSubsysState) -> None:
        mem_cgroup_css_offline(k, css)

    def css_released(self, k: Kernel, css: CgroupSubsysState) -> None:
        pass  # invalidate_reclaim_iterators(): no reclaim iterators in the model

    def css_free(self, k: Kernel, css: CgroupSubsysState) -> None:
        mem_cgroup_css_free(k, css)


# ====================================================================== statistics
#: member names the vmstat accesses declare, precomputed (these run on every allocation)
_VMSTAT_FIELD = [f"vmstats[{i.name}]" for i in MemcgStat]
_PCPU_STAT_FIELD: list[list[str]] = []


def _pcpu_stat_field(cpu: int, idx: int) -> str:
    while len(_PCPU_STAT_FIELD) <= cpu:
        c = len(_PCPU_STAT_FIELD)
        _PCPU_STAT_FIELD.append([f"cpu{c}.stat[{i.name}]" for i in MemcgStat])
    return _PCPU_STAT_FIELD[cpu][idx]


def __mod_memcg_state(k: Kernel, memcg: MemCgroup, idx: MemcgStat, val: int) -> None:
    """__mod_memcg_state(): batch per cpu; past the threshold, add to every ancestor.

    Caller has interrupts disabled.  The threshold is MEMCG_CHARGE_BATCH pages, in bytes for
    byte-counted items.
    """
    pcpu = memcg.vmstats_percpu
    if pcpu is None:
        return
    cpu = k.this_cpu.id
    k.access(pcpu, _pcpu_stat_field(cpu, idx), _RMW)
    stat = pcpu.stat[cpu]
    x = val + stat[idx]
    threshold = k.config.memcg_charge_batch
    if idx in MEMCG_STAT_IN_BYTES:
        threshold *= k.page_size
    if abs(x) > threshold:
        local = memcg.vmstats_local
        assert local is not None
        local.stat[cpu][idx] += x
        mi: MemCgroup | None = memcg
        field = _VMSTAT_FIELD[idx]
        while mi is not None:
            k.access(mi, field, _RMW)
            mi.vmstats[idx] += x
            mi = parent_mem_cgroup(mi)
        x = 0
    stat[idx] = x


def mod_memcg_state(k: Kernel, memcg: MemCgroup, idx: MemcgStat, val: int) -> None:
    """mod_memcg_state(): __mod_memcg_state() with interrupts disabled."""
    flags = local_irq_save(k)
    __mod_memcg_state(k, memcg, idx, val)
    local_irq_restore(k, flags)


def memcg_page_state(memcg: MemCgroup, idx: MemcgStat) -> int:
    """memcg_page_state(): the hierarchical atomic counter, clamped at 0 (per-cpu batches
    not yet flushed are not included)."""
    return max(0, memcg.vmstats[idx])


def memcg_flush_percpu_vmstats(k: Kernel, memcg: MemCgroup, slab_only: bool) -> None:
    """memcg_flush_percpu_vmstats(): add every CPU's pending deltas to memcg and ancestors.

    As in 5.3, the per-cpu values are not zeroed: a memcg flushed at kmem offline
    (``slab_only``) and again at free counts its slab deltas twice in its ancestors; 5.4
    ("mm: memcg/slab: fix percpu slab vmstats flushing") stopped the offline flush
    (:attr:`MemcgGlobals.flush_slab_vmstats_at_offline`).
    """
    pcpu = memcg.vmstats_percpu
    if pcpu is None:
        return
    if slab_only:
        items = [MemcgStat.NR_SLAB_RECLAIMABLE, MemcgStat.NR_SLAB_UNRECLAIMABLE]
    else:
        items = list(MemcgStat)
    stat = {i: 0 for i in items}
    for cpu in range(k.nr_cpus):
        k.access(pcpu, f"cpu{cpu}.stat", _READ)
        for i in items:
            stat[i] += pcpu.stat[cpu][i]
    mi: MemCgroup | None = memcg
    while mi is not None:
        for i in items:
            if stat[i]:
                k.access(mi, f"vmstats[{i.name}]", _RMW)
                mi.vmstats[i] += stat[i]
        mi = parent_mem_cgroup(mi)


def memcg_memory_event(k: Kernel, memcg: MemCgroup, event: MemcgEvent) -> None:
    """memcg_memory_event(): count in memory.events.local of memcg, and in memory.events of
    memcg and (v2) its ancestors below the root."""
    if not mem_cgroup_is_root(k, memcg):
        k.access(memcg, f"memory_events_local[{event.name}]", _RMW)
        memcg.memory_events_local[event] += 1
    m: MemCgroup | None = memcg
    while m is not None and not mem_cgroup_is_root(k, m):
        k.access(m, f"memory_events[{event.name}]", _RMW)
        m.memory_events[event] += 1
        m = parent_mem_cgroup(m)


def memory_current_bytes(k: Kernel, memcg: MemCgroup) -> int:
    """memory_current_read(): page_counter_read(&memcg->memory) * PAGE_SIZE."""
    return page_counter_read(memcg.memory) * k.page_size


# ====================================================================== task -> memcg
def mem_cgroup_from_task(k: Kernel, task: Task) -> MemCgroup | None:
    """mem_cgroup_from_task(): task_css(p, memory_cgrp_id), under RCU."""
    cset = rcu_dereference(k, task, "cgroups")
    if cset is None:
        return None
    css = cset.subsys.get(k.memcg.memory_cgrp_id)
    assert css is None or isinstance(css, MemCgroup)
    return css


def get_mem_cgroup_from_current(k: Kernel) -> MemCgroup:
    """get_mem_cgroup_from_current() / get_mem_cgroup_from_mm(): a referenced memcg.

    Loops on css_tryget(), which succeeds on an offline memcg whose count is not zero: the
    result may be dying.  ``current->active_memcg`` takes precedence (tryget_online, else root).
    """
    g = k.memcg
    root = g.root_mem_cgroup
    assert root is not None
    t = k.current
    assert t is not None
    active = t.active_memcg
    if active is not None:
        if css_tryget_online(k, active):
            return active  # type: ignore[no-any-return]
        return root
    rcu_read_lock(k)
    while True:
        memcg = mem_cgroup_from_task(k, t) or root
        if css_tryget(k, memcg):
            break
    rcu_read_unlock(k)
    return memcg


def memcg_kmem_bypass(k: Kernel) -> bool:
    """memcg_kmem_bypass(): interrupts and kernel threads are not accounted."""
    t = k.current
    return t is None or t.daemon or t.context is _SOFTIRQ


# ====================================================================== charging
def _stock(k: Kernel) -> MemcgStockPcp:
    return k.memcg.stocks[k.this_cpu.id]


def consume_stock(k: Kernel, memcg: MemCgroup, nr_pages: int) -> bool:
    """consume_stock(): take ``nr_pages`` from this CPU's page stock if it caches memcg."""
    if nr_pages > MEMCG_CHARGE_BATCH:
        return False
    flags = local_irq_save(k)
    stock = _stock(k)
    ret = False
    if k.load(stock, "cached") is memcg and stock.nr_pages >= nr_pages:
        k.store(stock, "nr_pages", stock.nr_pages - nr_pages)
        ret = True
    local_irq_restore(k, flags)
    return ret


def drain_stock(k: Kernel, stock: MemcgStockPcp) -> None:
    """drain_stock(): return the stocked pages (and their css references)."""
    old = k.load(stock, "cached")
    if stock.nr_pages:
        page_counter_uncharge(k, old.memory, stock.nr_pages)
        css_put_many(k, old, stock.nr_pages)
        k.store(stock, "nr_pages", 0)
    k.store(stock, "cached", None)


def refill_stock(k: Kernel, memcg: MemCgroup, nr_pages: int) -> None:
    """refill_stock(): stock pages for memcg on this CPU, draining another memcg's."""
    flags = local_irq_save(k)
    stock = _stock(k)
    if k.load(stock, "cached") is not memcg:
        drain_stock(k, stock)
        k.store(stock, "cached", memcg)
    k.store(stock, "nr_pages", stock.nr_pages + nr_pages)
    if stock.nr_pages > MEMCG_CHARGE_BATCH:
        drain_stock(k, stock)
    local_irq_restore(k, flags)


def consume_subpage_stock(k: Kernel, memcg: MemCgroup, nr_bytes: int) -> bool:
    """consume_subpage_stock() (RFC 01/14): take bytes from this CPU's byte stock."""
    if nr_bytes > MEMCG_CHARGE_BATCH * k.page_size:
        return False
    flags = local_irq_save(k)
    stock = _stock(k)
    ret = False
    if k.load(stock, "subpage_cached") is memcg and stock.nr_bytes >= nr_bytes:
        k.store(stock, "nr_bytes", stock.nr_bytes - nr_bytes)
        ret = True
    local_irq_restore(k, flags)
    return ret


def drain_subpage_stock(k: Kernel, stock: MemcgStockPcp) -> None:
    """drain_subpage_stock() (RFC 01/14): uncharge whole pages; keep the sub-page remainder
    in the memcg's nr_stocked_bytes; drop the stock's css reference."""
    old = k.load(stock, "subpage_cached")
    if stock.nr_bytes:
        nr_pages = stock.nr_bytes // k.page_size
        if nr_pages:
            page_counter_uncharge(k, old.memory, nr_pages)
        k.rmw(old, "nr_stocked_bytes", lambda b: b + stock.nr_bytes % k.page_size)
        k.store(stock, "nr_bytes", 0)
    if old is not None:
        css_put(k, old)
        k.store(stock, "subpage_cached", None)


def refill_subpage_stock(k: Kernel, memcg: MemCgroup, nr_bytes: int) -> None:
    """refill_subpage_stock() (RFC 01/14): stock bytes for memcg on this CPU.

    Switching the stock to memcg takes a css reference on it and pulls its leftover
    nr_stocked_bytes back in.
    """
    flags = local_irq_save(k)
    stock = _stock(k)
    if k.load(stock, "subpage_cached") is not memcg:
        drain_subpage_stock(k, stock)
        css_get(k, memcg)
        k.store(stock, "subpage_cached", memcg)
        left = k.xchg(memcg, "nr_stocked_bytes", 0)
        k.store(stock, "nr_bytes", left)
    k.store(stock, "nr_bytes", stock.nr_bytes + nr_bytes)
    if stock.nr_bytes > MEMCG_CHARGE_BATCH * k.page_size:
        drain_subpage_stock(k, stock)
    local_irq_restore(k, flags)


def drain_local_stock(k: Kernel, work: WorkStruct) -> None:
    """drain_local_stock(): drain this CPU's stocks (a work item, or called directly)."""
    flags = local_irq_save(k)
    stock = _stock(k)
    if k.load(stock, "flushing"):
        drain_stock(k, stock)
        drain_subpage_stock(k, stock)
        k.store(stock, "flushing", False)
    local_irq_restore(k, flags)


def drain_all_stock(k: Kernel, root_memcg: MemCgroup) -> None:
    """drain_all_stock(): drain every CPU whose stocks cache root_memcg or a descendant;
    this CPU inline, others through a work item on their CPU (asynchronously)."""
    g = k.memcg
    if not mutex_trylock(k, g.percpu_charge_mutex):
        return
    preempt_disable(k)  # get_cpu()
    curcpu = k.this_cpu.id
    for stock in g.stocks:
        flush = False
        rcu_read_lock(k)
        memcg = k.load(stock, "cached")
        if memcg is not None and stock.nr_pages and mem_cgroup_is_descendant(memcg, root_memcg):
            flush = True
        smemcg = k.load(stock, "subpage_cached")
        if smemcg is not None and mem_cgroup_is_descendant(smemcg, root_memcg):
            flush = True
        rcu_read_unlock(k)
        if flush:
            old, _ = k.rmw(stock, "flushing", lambda _f: True)
            if not old:
                if stock.cpu == curcpu:
                    drain_local_stock(k, stock.work)
                else:
                    queue_work_on(k, stock.cpu, g.system_wq, stock.work)
    preempt_enable(k)  # put_cpu()
    mutex_unlock(k, g.percpu_charge_mutex)


def mem_cgroup_margin(memcg: MemCgroup) -> int:
    """mem_cgroup_margin(): pages that can still be charged before hitting memory.max."""
    return max(0, memcg.memory.max - page_counter_read(memcg.memory))


def try_charge(k: Kernel, memcg: MemCgroup, gfp: int, amount: int, subpage: bool) -> int:
    """try_charge() with the RFC 01/14 subpage extension: 0 or -ENOMEM.

    ``amount`` is pages, or bytes when ``subpage``.  Page charges take a css reference per
    page; byte charges take none (the byte stock holds one).  A batch of
    MEMCG_CHARGE_BATCH pages is charged and the surplus stocked on this CPU.
    """
    page_size = k.page_size
    nr_pages = amount // page_size + 1 if subpage else amount
    if mem_cgroup_is_root(k, memcg):
        return 0
    batch = max(MEMCG_CHARGE_BATCH, nr_pages)
    nr_retries = MEM_CGROUP_RECLAIM_RETRIES
    while True:
        if subpage:
            if consume_subpage_stock(k, memcg, amount):
                return 0
        elif consume_stock(k, memcg, nr_pages):
            return 0
        ok, fail = page_counter_try_charge(k, memcg.memory, batch)
        if ok:
            break
        over = fail._kowner if fail is not None else memcg
        assert isinstance(over, MemCgroup)
        if batch > nr_pages:
            batch = nr_pages
            continue
        if not gfp & Gfp.DIRECT_RECLAIM:
            return _nomem(k, memcg, gfp, amount, nr_pages, subpage)
        memcg_memory_event(k, over, MemcgEvent.MEMCG_MAX)
        reclaim = k.memcg.reclaim
        if reclaim is not None:
            reclaim(k, over, nr_pages, gfp)
        if mem_cgroup_margin(over) >= nr_pages:
            continue
        if nr_retries > 0:
            nr_retries -= 1
            if reclaim is not None:
                continue
        # No OOM killer in the model: an OOM here fails the charge.
        memcg_memory_event(k, over, MemcgEvent.MEMCG_OOM)
        return _nomem(k, memcg, gfp, amount, nr_pages, subpage)
    # done_restock
    if subpage:
        if batch * page_size > amount:
            refill_subpage_stock(k, memcg, batch * page_size - amount)
    else:
        css_get_many(k, memcg, batch)
        if batch > nr_pages:
            refill_stock(k, memcg, batch - nr_pages)
    _check_high(k, memcg, batch)
    return 0


def _nomem(k: Kernel, memcg: MemCgroup, gfp: int, amount: int, nr_pages: int,
           subpage: bool) -> int:
    if not gfp & Gfp.NOFAIL:
        return -ENOMEM
    # force:
    page_counter_charge(k, memcg.memory, nr_pages)
    if subpage:
        refill_subpage_stock(k, memcg, nr_pages * k.page_size - amount)
    else:
        css_get_many(k, memcg, nr_pages)
    return 0


def _check_high(k: Kernel, memcg: MemCgroup, batch: int) -> None:
    """The memory.high check at the end of try_charge(): schedule reclaim on return to user."""
    t = k.current
    m: MemCgroup | None = memcg
    while m is not None:
        if page_counter_read(m.memory) > m.high:
            if t is not None:
                t.memcg_nr_pages_over_high += batch
            break
        m = parent_mem_cgroup(m)


def cancel_charge(k: Kernel, memcg: MemCgroup, nr_pages: int) -> None:
    """cancel_charge(): undo a page charge and its css references."""
    if mem_cgroup_is_root(k, memcg):
        return
    page_counter_uncharge(k, memcg.memory, nr_pages)
    css_put_many(k, memcg, nr_pages)


def __memcg_kmem_charge_subpage(k: Kernel, memcg: MemCgroup, size: int, gfp: int) -> int:
    """__memcg_kmem_charge_subpage() (RFC 01/14): charge ``size`` bytes; 0 or -ENOMEM."""
    return try_charge(k, memcg, gfp, size, True)


def __memcg_kmem_uncharge_subpage(k: Kernel, memcg: MemCgroup, size: int) -> None:
    """__memcg_kmem_uncharge_subpage() (RFC 01/14): give ``size`` bytes back to the stock."""
    if mem_cgroup_is_root(k, memcg):
        return
    refill_subpage_stock(k, memcg, size)


# ====================================================================== boot and checks
def mem_cgroup_init(k: Kernel) -> MemoryCgrpSubsys:
    """mem_cgroup_init(): memcg's globals and per-cpu stocks; the subsystem to register."""
    k.memcg = MemcgGlobals(k)
    return MemoryCgrpSubsys()


def memcg_stock_refs(k: Kernel, memcg: MemCgroup) -> int:
    """css references the per-cpu stocks hold on ``memcg``."""
    n = 0
    for st in k.memcg.stocks:
        if st.cached is memcg:
            n += st.nr_pages
        if st.subpage_cached is memcg:
            n += 1
    return n


def memcg_ptr_refs(memcg: MemCgroup) -> int:
    """css references held on ``memcg`` by mem_cgroup_ptrs (the seed's rule).

    While the memcg's kmem is online its list holds its own ptr (no css reference yet) and
    the ptrs inherited from removed children (one reference each); after its own reparenting
    the list has been spliced away and no ptr references it.
    """
    if memcg.kmem_state is not KmemState.KMEM_ONLINE:
        return 0
    ptrs = list_entries(memcg.kmem_memcg_ptr_list)
    return len(ptrs) - (1 if memcg.kmem_memcg_ptr in ptrs else 0)


def memcg_expected_css_refs(k: Kernel, memcg: MemCgroup) -> int:
    """The references a quiescent kernel holds on a non-root memcg's css, from its state."""
    css = memcg
    n = 0
    ref = css.refcnt
    if not (ref.flags & 2):  # __PERCPU_REF_DEAD: the initial reference is still there
        n += 1
    if css.flags & CSS_DYING and css.flags & CSS_ONLINE:
        n += 1  # kill_css() pin, until css_killed_work_fn()
    if memcg.memcg_id.ref > 0:
        n += 1  # mem_cgroup_css_online(): the id pins the css
    n += len(css_children(css))  # init_and_link_css(): each child pins its parent
    for cset in _css_sets(k):
        if memcg in cset.subsys.values():
            n += 1
    n += memcg_ptr_refs(memcg)
    n += memcg_stock_refs(k, memcg)
    for holder in k.memcg.extra_css_refs:
        n += holder(k, memcg)
    return n


def _extra_maps(k: Kernel, maps: list[Callable[[Kernel], dict[int, int]]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for fn in maps:
        for key, n in fn(k).items():
            out[key] = out.get(key, 0) + n
    return out


def _css_sets(k: Kernel) -> list[CssSet]:
    return list(k.cgroup.css_set_table.values())


def all_memcgs(k: Kernel) -> list[MemCgroup]:
    """Every memcg not yet freed: the root and its css tree (live and dying)."""
    root = k.memcg.root_mem_cgroup
    return _css_descendants_pre(root) if root is not None else []


def check_memcg_refs(k: Kernel) -> None:
    """At quiescence: each memcg's css count equals the references held on it, and every
    live ptr's count equals the references objects hold on it."""
    extra = _extra_maps(k, k.memcg.extra_css_refs_map)
    for memcg in all_memcgs(k):
        actual = css_refcount(memcg)
        if actual is None:
            continue
        expected = memcg_expected_css_refs(k, memcg) + extra.get(id(memcg), 0)
        if actual != expected:
            k.report(ViolationKind.ACCOUNTING,
                     f"css refcount of {_memcg_path(memcg)} is {actual}, but {expected} "
                     "references are held on it", obj=memcg, field="refcnt")
    held = _extra_maps(k, k.memcg.extra_ptr_refs_map)
    for obj in k.heap.live.values():
        p = getattr(obj, "memcg_ptr", None)
        if p is not None:
            held[id(p)] = held.get(id(p), 0) + 1
    for ptr in k.heap.live.values():
        if isinstance(ptr, MemCgroupPtr) and ptr.memcg is not None:
            actual = percpu_ref_read(ptr.refcnt)
            # The initial reference lives until the ptr is killed at reparenting.
            expected = held.get(id(ptr), 0) + (0 if ptr.refcnt.flags & 2 else 1)
            if actual != expected:
                k.report(ViolationKind.ACCOUNTING,
                         f"{ptr.kname()} refcount is {actual}, but {expected} references are "
                         "held on it", obj=ptr, field="refcnt")


def check_memcg_conservation(k: Kernel) -> None:
    """At quiescence: for every online memcg, memory.current is exactly the bytes of the live
    accounted objects whose ptr points into its subtree, plus the bytes stocked there (per-cpu
    stocks, nr_stocked_bytes, and the stranded leftovers of freed descendants)."""
    page = k.page_size
    charged = _extra_maps(k, k.memcg.extra_charged_bytes_map)
    for obj in k.heap.live.values():
        p = getattr(obj, "memcg_ptr", None)
        if p is not None and p.memcg is not None:
            m = p.memcg
            charged[id(m)] = charged.get(id(m), 0) + obj.alloc_size()
    for memcg in all_memcgs(k):
        own = charged.get(id(memcg), 0) + memcg.nr_stocked_bytes + memcg._kstranded_bytes
        for st in k.memcg.stocks:
            if st.subpage_cached is memcg:
                own += st.nr_bytes
            if st.cached is memcg:
                own += st.nr_pages * page
        for extra in k.memcg.extra_charged_bytes:
            own += extra(k, memcg)
        charged[id(memcg)] = own
    for memcg in all_memcgs(k):
        if not memcg.flags & CSS_ONLINE or mem_cgroup_is_root(k, memcg):
            continue
        expected = sum(charged.get(id(m), 0) for m in _css_descendants_pre(memcg))
        actual = page_counter_read(memcg.memory) * page
        if actual != expected:
            k.report(ViolationKind.ACCOUNTING,
                     f"memory.current of {_memcg_path(memcg)} is {actual} bytes, but "
                     f"{expected} bytes are charged in its subtree", obj=memcg, field="memory")


def is_dying(memcg: MemCgroup) -> bool:
    """Removed (killed) but not yet freed."""
    return bool(percpu_ref_is_dying_raw(memcg.refcnt))


def percpu_ref_is_dying_raw(ref: PercpuRef) -> int:
    return ref.flags & 2

