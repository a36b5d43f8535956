"""struct obj_cgroup: the merged form of the seed (mm/memcontrol.c, Linux 5.9 to 5.12).

"[PATCH RFC 02/14] mm: memcg: introduce mem_cgroup_ptr" became ``struct obj_cgroup`` in
"mm: memcg: introduce obj_cgroup" (bf4f059954dc, v5.9).  The idea is the seed's: slab objects
reference a refcounted indirection object, and taking a memcg offline repoints the handful of
objcgs on its list to the parent instead of walking every object.  What the merge refined:

- byte-granular charging lives in the objcg: a per-cpu *object stock* of pre-charged bytes
  (``consume_obj_stock`` / ``refill_obj_stock`` / ``drain_obj_stock``) and the objcg's own
  ``nr_charged_bytes`` for the sub-page remainder of a drained stock, which moves with the
  objcg when it is reparented (the RFC left it stranded in the dead memcg);
- the memcg is taken from an objcg with a ``css_tryget`` loop (a plain ``css_get`` could raise
  a dying memcg's count from zero: eefbfa7fd678), factored out as
  ``get_mem_cgroup_from_objcg`` in 5.12;
- ``memcg_reparent_objcgs`` repoints and splices first and kills the memcg's objcg last, and
  the memcg's own objcg takes its css reference only when it is reparented.

Functions carry the kernel's names; each docstring says where the model simplifies.  Charges
go through the model's 5.3 ``try_charge`` (:mod:`memcgsim.mm.memcontrol`), which takes a css
reference per page; 5.10's takes none for kmem, so ``__memcg_kmem_charge`` drops them at once
(the net effect is the same: charges through an objcg pin no css).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memcgsim.cgroup.cgroup import css_get, css_put, css_put_many, css_tryget
from memcgsim.kernel.heap import GFP_KERNEL, kfree, kfree_rcu, kzalloc
from memcgsim.kernel.list import ListHead, list_add, list_del, list_for_each_entry, list_splice
from memcgsim.kernel.locking import (
    local_irq_restore,
    local_irq_save,
    spin_lock_irq,
    spin_lock_irqsave,
    spin_unlock_irq,
    spin_unlock_irqrestore,
)
from memcgsim.kernel.objects import KObject
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
    rcu_replace_pointer,
)
from memcgsim.kernel.violations import ViolationKind
from memcgsim.mm.memcontrol import (
    MemCgroup,
    MemcgStat,
    __mod_memcg_state,
    mem_cgroup_from_task,
    mem_cgroup_is_root,
    memcg_kmem_bypass,
    parent_mem_cgroup,
    try_charge,
)
from memcgsim.mm.page_counter import page_counter_uncharge

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel

__all__ = [
    "ObjCgroup",
    "ObjStock",
    "__memcg_kmem_charge",
    "__memcg_kmem_uncharge",
    "check_objcg_refs",
    "consume_obj_stock",
    "drain_obj_stock",
    "get_mem_cgroup_from_objcg",
    "get_obj_cgroup_from_current",
    "memcg_reparent_objcgs",
    "mod_objcg_state",
    "obj_cgroup_alloc",
    "obj_cgroup_charge",
    "obj_cgroup_get",
    "obj_cgroup_memcg",
    "obj_cgroup_put",
    "obj_cgroup_release",
    "obj_cgroup_tryget",
    "obj_cgroup_uncharge",
    "objcg_charged_bytes",
    "objcg_css_refs",
    "objcg_init_stocks",
    "refill_obj_stock",
]


class ObjCgroup(KObject):
    """struct obj_cgroup (include/linux/memcontrol.h, 5.9+).

    ``list`` and ``rcu`` are a union, as in the seed's struct mem_cgroup_ptr.
    """

    ktype = "struct obj_cgroup"
    #: percpu_ref (5 words in 5.9) + memcg + nr_charged_bytes + list_head/rcu_head union
    ksize = 64
    kfields = ("refcnt", "memcg", "nr_charged_bytes", "list")

    def __init__(self) -> None:
        super().__init__()
        self.refcnt = PercpuRef(self, "refcnt")
        self.memcg: MemCgroup | None = None
        #: atomic_t nr_charged_bytes: sub-page bytes charged to memcg and not used by objects
        self.nr_charged_bytes = 0
        self.list = ListHead(self, "list")
        self.rcu = RcuHead(self, "rcu", union=self.list)
        #: model bookkeeping: obj_cgroup_release() has run (it no longer pins its memcg)
        self._kreleased = False

    def _klabel(self) -> str:
        m = self.memcg
        if isinstance(m, MemCgroup) and m.cgroup is not None:
            from memcgsim.cgroup.cgroup import cgroup_path

            return "->" + cgroup_path(m.cgroup)
        return ""


class ObjStock(KObject):
    """This CPU's object stock: ``cached_objcg`` and ``nr_bytes`` of 5.10's memcg_stock_pcp.

    5.14 split these fields out as ``struct obj_stock``; the model keeps them apart from the
    5.3 page stock (:class:`memcgsim.mm.memcontrol.MemcgStockPcp`), whose ``nr_bytes`` is the
    RFC's byte stock.  The stock holds a reference on the objcg it caches.
    """

    ktype = "struct obj_stock"

    def __init__(self, cpu: int) -> None:
        super().__init__()
        self.cpu = cpu
        self.cached_objcg: ObjCgroup | None = None
        #: pre-charged bytes of cached_objcg not used by any object yet
        self.nr_bytes = 0


def objcg_init_stocks(k: Kernel) -> None:
    """Allocate the per-cpu object stocks (part of mem_cgroup_init's per-cpu setup)."""
    if k.memcg.obj_stocks:
        return
    for cpu in range(k.nr_cpus):
        st = ObjStock(cpu)
        k.heap.adopt(st, "mem_cgroup_init", static=True)
        k.memcg.obj_stocks.append(st)


def _obj_stock(k: Kernel) -> ObjStock:
    stock: ObjStock = k.memcg.obj_stocks[k.this_cpu.id]
    return stock


# ====================================================================== lifetime
def obj_cgroup_tryget(k: Kernel, objcg: ObjCgroup) -> bool:
    """obj_cgroup_tryget(): percpu_ref_tryget(&objcg->refcnt)."""
    return percpu_ref_tryget(k, objcg.refcnt)


def obj_cgroup_get(k: Kernel, objcg: ObjCgroup) -> None:
    """obj_cgroup_get(): percpu_ref_get(&objcg->refcnt)."""
    percpu_ref_get(k, objcg.refcnt)


def obj_cgroup_put(k: Kernel, objcg: ObjCgroup) -> None:
    """obj_cgroup_put(): percpu_ref_put(&objcg->refcnt); the last put releases it."""
    percpu_ref_put(k, objcg.refcnt)


def obj_cgroup_memcg(k: Kernel, objcg: ObjCgroup) -> MemCgroup:
    """obj_cgroup_memcg(): READ_ONCE(objcg->memcg); the caller holds rcu_read_lock() (or
    css_set_lock), which keeps the memcg from being freed, not from being reparented."""
    memcg: MemCgroup = k.load(objcg, "memcg")
    return memcg


def obj_cgroup_release(k: Kernel, ref: PercpuRef) -> None:
    """obj_cgroup_release(): the objcg's percpu_ref release, possibly in RCU-callback context.

    All objects are gone, so nr_charged_bytes is a whole number of pages (WARN otherwise):
    uncharge them from the memcg the objcg points to now, unlink it from that memcg's list,
    drop the css reference it holds, and free it after a grace period.
    """
    objcg = ref._kowner
    assert isinstance(objcg, ObjCgroup)
    g = k.cgroup
    nr_bytes = k.load(objcg, "nr_charged_bytes")
    k.warn_on(bool(nr_bytes % k.page_size),
              f"obj_cgroup_release: {objcg.kname()} nr_charged_bytes {nr_bytes} is not "
              "page aligned")
    nr_pages = nr_bytes // k.page_size
    flags = spin_lock_irqsave(k, g.css_set_lock)
    memcg = obj_cgroup_memcg(k, objcg)
    if nr_pages:
        __memcg_kmem_uncharge(k, memcg, nr_pages)
    list_del(k, objcg.list)
    objcg._kreleased = True
    css_put(k, memcg)  # mem_cgroup_put()
    spin_unlock_irqrestore(k, g.css_set_lock, flags)
    k.trace("obj_cgroup_release", objcg.kname())
    percpu_ref_exit(k, ref)
    kfree_rcu(k, objcg, "rcu")


def obj_cgroup_alloc(k: Kernel) -> ObjCgroup | None:
    """obj_cgroup_alloc(): kzalloc + percpu_ref_init(release = obj_cgroup_release); NULL on
    failure (either allocation; failslab sites ``obj_cgroup_alloc``)."""
    objcg = kzalloc(k, ObjCgroup, gfp=GFP_KERNEL)
    if objcg is None:
        return None
    release = getattr(k.design, "obj_cgroup_release", obj_cgroup_release)
    ret = percpu_ref_init(k, objcg.refcnt, release, 0, GFP_KERNEL)
    if ret:
        kfree(k, objcg)
        return None
    k.store(objcg.list, "next", objcg.list)  # INIT_LIST_HEAD(&objcg->list)
    k.store(objcg.list, "prev", objcg.list)
    return objcg


def memcg_online_objcg(k: Kernel, memcg: MemCgroup) -> int:
    """The objcg part of 5.10's memcg_online_kmem(): allocate and publish memcg->objcg.

    ``objcg->memcg = memcg`` takes no css reference: as in the seed, css_alloc runs before the
    css refcount exists.  Returns 0 or -ENOMEM (memcg_online_kmem frees the kmemcg id).
    """
    from memcgsim.kernel.errno import ENOMEM

    objcg = obj_cgroup_alloc(k)
    if objcg is None:
        return -ENOMEM
    k.store(objcg, "memcg", memcg)
    rcu_assign_pointer(k, memcg, "objcg", objcg)
    return 0


def memcg_reparent_objcgs(k: Kernel, memcg: MemCgroup, parent: MemCgroup) -> int:
    """memcg_reparent_objcgs() (5.10): unpublish memcg's objcg, repoint it and every objcg
    already reparented to memcg to ``parent``, splice them onto parent's list, then kill the
    memcg's objcg.  Returns the number of objcgs repointed (work is O(objcgs), not objects).

    Compared with the seed's memcg_reparent_kmem_memcg_ptr(): the kill comes after the splice,
    and the memcg's own objcg takes a reference on the parent (not on memcg) when it moves.
    """
    g = k.cgroup
    objcg = rcu_replace_pointer(k, memcg, "objcg", None, True)
    assert objcg is not None
    nr = 1
    spin_lock_irq(k, g.css_set_lock)
    # 1) Move active objcg to the parent's list
    k.xchg(objcg, "memcg", parent)
    css_get(k, parent)
    list_add(k, objcg.list, parent.objcg_list)
    # 2) Move already reparented objcgs to the parent's list
    for it in list_for_each_entry(k, memcg.objcg_list):
        css_get(k, parent)
        k.xchg(it, "memcg", parent)
        css_put(k, memcg)
        nr += 1
    list_splice(k, memcg.objcg_list, parent.objcg_list)
    spin_unlock_irq(k, g.css_set_lock)
    k.trace("memcg_reparent_objcgs", _path(memcg), "->", _path(parent), f"nr={nr}")
    percpu_ref_kill(k, objcg.refcnt)
    return nr


# ====================================================================== memcg from objcg
def get_mem_cgroup_from_objcg(k: Kernel, objcg: ObjCgroup) -> MemCgroup:
    """get_mem_cgroup_from_objcg() (5.12; open-coded in 5.9-5.11's obj_cgroup_charge).

    Under rcu_read_lock(), read objcg->memcg and css_tryget() it, retrying until it succeeds:
    a tryget fails only on a memcg whose count already reached zero, which can only be one a
    concurrent reparenting has just moved the objcg away from, so the retry reads the parent.
    """
    rcu_read_lock(k)
    while True:
        memcg = obj_cgroup_memcg(k, objcg)
        if css_tryget(k, memcg):
            break
    rcu_read_unlock(k)
    return memcg


def get_obj_cgroup_from_current(k: Kernel) -> ObjCgroup | None:
    """get_obj_cgroup_from_current() (5.10): a referenced objcg of the current task's memcg
    or its nearest ancestor that has one; NULL for the root, kthreads and interrupts."""
    if memcg_kmem_bypass(k):
        return None
    root = k.memcg.root_mem_cgroup
    t = k.current
    assert t is not None
    objcg: ObjCgroup | None = None
    rcu_read_lock(k)
    memcg: MemCgroup | None = t.active_memcg or mem_cgroup_from_task(k, t) or root
    while memcg is not None and memcg is not root:
        objcg = rcu_dereference(k, memcg, "objcg")
        if objcg is not None and obj_cgroup_tryget(k, objcg):
            break
        objcg = None
        memcg = parent_mem_cgroup(memcg)
    rcu_read_unlock(k)
    return objcg


# ====================================================================== charging
def __memcg_kmem_charge(k: Kernel, memcg: MemCgroup, gfp: int, nr_pages: int) -> int:
    """__memcg_kmem_charge() (5.10): charge whole pages; 0 or -ENOMEM.

    cgroup v2 has no separate kmem counter.  The model's try_charge (5.3) takes a css
    reference per page; 5.10 takes none for these charges, so they are dropped here.
    """
    ret = try_charge(k, memcg, gfp, nr_pages, False)
    if ret:
        return ret
    if not mem_cgroup_is_root(k, memcg):
        css_put_many(k, memcg, nr_pages)
    return 0


def __memcg_kmem_uncharge(k: Kernel, memcg: MemCgroup, nr_pages: int) -> None:
    """__memcg_kmem_uncharge() (5.10): page_counter_uncharge(&memcg->memory, nr_pages)."""
    page_counter_uncharge(k, memcg.memory, nr_pages)


def consume_obj_stock(k: Kernel, objcg: ObjCgroup, nr_bytes: int) -> bool:
    """consume_obj_stock(): take ``nr_bytes`` from this CPU's object stock if it caches objcg."""
    flags = local_irq_save(k)
    stock = _obj_stock(k)
    ret = False
    if k.load(stock, "cached_objcg") is objcg:
        have = k.load(stock, "nr_bytes")
        if have >= nr_bytes:
            k.store(stock, "nr_bytes", have - nr_bytes)
            ret = True
    local_irq_restore(k, flags)
    return ret


def drain_obj_stock(k: Kernel, stock: ObjStock) -> None:
    """drain_obj_stock(): uncharge the stock's whole pages from objcg->memcg, keep the
    sub-page remainder in objcg->nr_charged_bytes, drop the stock's objcg reference."""
    old = k.load(stock, "cached_objcg")
    if old is None:
        return
    nr_bytes = k.load(stock, "nr_bytes")
    if nr_bytes:
        nr_pages = nr_bytes // k.page_size
        nr_rest = nr_bytes % k.page_size
        if nr_pages:
            rcu_read_lock(k)
            __memcg_kmem_uncharge(k, obj_cgroup_memcg(k, old), nr_pages)
            rcu_read_unlock(k)
        # The leftover is charged, but not a whole page: it moves with the objcg.
        k.rmw(old, "nr_charged_bytes", lambda b: b + nr_rest)
        k.store(stock, "nr_bytes", 0)
    obj_cgroup_put(k, old)
    k.store(stock, "cached_objcg", None)


def refill_obj_stock(k: Kernel, objcg: ObjCgroup, nr_bytes: int) -> None:
    """refill_obj_stock(): give ``nr_bytes`` to this CPU's object stock.

    Switching the stock to objcg drains the old one, takes a reference on objcg and pulls in
    its nr_charged_bytes; more than a page in stock is drained back to the page counter.
    """
    flags = local_irq_save(k)
    stock = _obj_stock(k)
    if k.load(stock, "cached_objcg") is not objcg:
        drain_obj_stock(k, stock)
        obj_cgroup_get(k, objcg)
        k.store(stock, "cached_objcg", objcg)
        k.store(stock, "nr_bytes", k.xchg(objcg, "nr_charged_bytes", 0))
    total = k.load(stock, "nr_bytes") + nr_bytes
    k.store(stock, "nr_bytes", total)
    if total > k.page_size:
        drain_obj_stock(k, stock)
    local_irq_restore(k, flags)


def obj_cgroup_charge(k: Kernel, objcg: ObjCgroup, gfp: int, size: int) -> int:
    """obj_cgroup_charge() (5.10): charge ``size`` bytes; 0 or -ENOMEM.

    From the object stock if it has the bytes; otherwise charge whole pages to the memcg the
    objcg points to now (taken with the css_tryget loop) and stock the unused part of the
    last page.
    """
    if consume_obj_stock(k, objcg, size):
        return 0
    get_memcg = getattr(k.design, "get_mem_cgroup_from_objcg", get_mem_cgroup_from_objcg)
    memcg = get_memcg(k, objcg)
    page = k.page_size
    nr_pages = size // page
    nr_bytes = size % page
    if nr_bytes:
        nr_pages += 1
    ret = __memcg_kmem_charge(k, memcg, gfp, nr_pages)
    if not ret and nr_bytes:
        refill_obj_stock(k, objcg, page - nr_bytes)
    css_put(k, memcg)
    return ret


def obj_cgroup_uncharge(k: Kernel, objcg: ObjCgroup, size: int) -> None:
    """obj_cgroup_uncharge(): refill_obj_stock(objcg, size)."""
    refill_obj_stock(k, objcg, size)


def mod_objcg_state(k: Kernel, objcg: ObjCgroup, idx: MemcgStat, nr: int) -> None:
    """mod_objcg_state() (mm/slab.h, 5.10): account ``nr`` bytes of slab to objcg's memcg.

    One node, so mod_memcg_lruvec_state() is __mod_memcg_state() with irqs disabled.
    """
    rcu_read_lock(k)
    memcg = obj_cgroup_memcg(k, objcg)
    flags = local_irq_save(k)
    __mod_memcg_state(k, memcg, idx, nr)
    local_irq_restore(k, flags)
    rcu_read_unlock(k)


# ====================================================================== checks and reports
def _all_objcgs(k: Kernel) -> list[ObjCgroup]:
    return [o for o in k.heap.live.values() if isinstance(o, ObjCgroup)]


def objcg_css_refs(k: Kernel) -> dict[int, int]:
    """css references objcgs hold, by id(memcg): one per reparented objcg not yet released.

    A memcg's own objcg holds none until memcg_reparent_objcgs() moves it to the parent.
    """
    out: dict[int, int] = {}
    for objcg in _all_objcgs(k):
        m = objcg.memcg
        if m is None or objcg._kreleased or m.objcg is objcg:
            continue
        out[id(m)] = out.get(id(m), 0) + 1
    return out


def objcg_charged_bytes(k: Kernel, held: dict[int, int] | None = None) -> dict[int, int]:
    """Bytes charged through objcgs, by id(memcg): their nr_charged_bytes and the bytes their
    per-cpu stocks hold (``held``: object bytes per id(objcg), from the slab owners)."""
    out: dict[int, int] = {}
    by_id = {id(o): o for o in _all_objcgs(k)}
    for objcg in by_id.values():
        m = objcg.memcg
        if m is None or objcg._kreleased:
            continue
        out[id(m)] = out.get(id(m), 0) + objcg.nr_charged_bytes
    for st in k.memcg.obj_stocks:
        o = st.cached_objcg
        if o is not None and o.memcg is not None:
            out[id(o.memcg)] = out.get(id(o.memcg), 0) + st.nr_bytes
    for oid, nr_bytes in (held or {}).items():
        o = by_id.get(oid)
        if o is not None and o.memcg is not None:
            out[id(o.memcg)] = out.get(id(o.memcg), 0) + nr_bytes
    return out


def check_objcg_refs(k: Kernel, held: dict[int, int]) -> None:
    """At quiescence: every live objcg's count equals the objects referencing it (``held``,
    by id(objcg)) plus the stocks caching it plus its initial reference until it is killed."""
    stock_refs: dict[int, int] = {}
    for st in k.memcg.obj_stocks:
        if st.cached_objcg is not None:
            stock_refs[id(st.cached_objcg)] = stock_refs.get(id(st.cached_objcg), 0) + 1
    for objcg in _all_objcgs(k):
        if objcg._kreleased:
            continue
        actual = percpu_ref_read(objcg.refcnt)
        expected = (held.get(id(objcg), 0) + stock_refs.get(id(objcg), 0)
                    + (0 if objcg.refcnt.flags & 2 else 1))
        if actual != expected:
            k.report(ViolationKind.ACCOUNTING,
                     f"{objcg.kname()} refcount is {actual}, but {expected} references are "
                     "held on it", obj=objcg, field="refcnt")


def _path(memcg: MemCgroup | None) -> str:
    from memcgsim.cgroup.cgroup import cgroup_path

    if memcg is None:
        return "NULL"
    return cgroup_path(memcg.cgroup) if memcg.cgroup is not None else memcg.kname()
