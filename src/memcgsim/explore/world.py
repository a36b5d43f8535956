"""A scenario's initial state, built directly and cheaply (no boot, no mkdir).

Stateless exploration re-executes a scenario from its initial state for every schedule, so
that state must be cheap to build.  Booting a :class:`~memcgsim.kernel.kernel.Kernel` and
running mkdir/rmdir costs about a millisecond; instead a :class:`World` constructs only the few
objects the racing code touches, in the state the kernel would have them in at the start of the
race: a root memcg (``CSS_NO_REF``), live memcgs whose css refcount is in percpu mode, removed
memcgs whose css refcount was killed and confirmed (atomic, DEAD, per-cpu counters already
freed, as 5.3 does at the confirmation), their kmem ptrs (published and on their memcg's list, or
inherited from removed children) and accounted objects that hold ptr references.

Model simplifications, as the world builds them:

- no ``struct cgroup``, css_sets, kernfs, workqueues or kworkers: the racing code of the seed
  touches none of them;
- a css whose count reaches zero is freed one RCU grace period later by :func:`world_css_release`
  (the kernel goes through css_release_work_fn and queue_rcu_work(css_free_rwork_fn) on
  cgroup_destroy_wq; both hops are workqueue steps that touch nothing the seed shares), and the
  free drops the css's pin on its parent as css_free_rwork_fn does.

The references a memcg's css count holds at the start are explicit (:attr:`World.pins`), so
the end-of-schedule checkers know what each count must be once every task has finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memcgsim.cgroup.cgroup import CSS_DYING, CSS_NO_REF, CSS_ONLINE, CgroupGlobals
from memcgsim.kernel.heap import free_percpu, kfree, kmalloc
from memcgsim.kernel.list import list_add, list_entries
from memcgsim.kernel.locking import Mutex, Spinlock
from memcgsim.kernel.objects import KObject
from memcgsim.kernel.percpu_ref import (
    PercpuRef,
    percpu_ref_init,
    percpu_ref_read,
)
from memcgsim.kernel.rcu import RcuHead, call_rcu
from memcgsim.kernel.violations import ViolationKind
from memcgsim.mm.memcontrol import (
    KmemState,
    MemcgGlobals,
    MemCgroup,
    MemCgroupPtr,
    MemcgStockPcp,
    memcg_ptr_release,
)
from memcgsim.mm.page_counter import page_counter_init, page_counter_read
from memcgsim.mm.slab import KmallocObject

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel

__all__ = [
    "RcuFreedObject",
    "RcuSlot",
    "World",
    "world_css_release",
]

#: percpu_count_ptr flag bits (lib/percpu-refcount.c)
_ATOMIC = 1
_DEAD = 2


@dataclass
class World:
    """The objects of one scenario run, by name, and the references held outside them.

    ``pins[name]`` is the number of css references on memcg ``name`` that something outside
    the modelled structures holds *once every task has finished* (the css's initial reference
    while it is online, kill_css()'s pin...).  References held by ptrs, per-cpu stocks and
    child csses not yet freed are computed from the state; a memcg expected to hold none
    must have been freed.
    """

    k: Kernel
    root: MemCgroup
    memcgs: dict[str, MemCgroup] = field(default_factory=dict)
    ptrs: dict[str, MemCgroupPtr] = field(default_factory=dict)
    objects: dict[str, KmallocObject] = field(default_factory=dict)
    pins: dict[str, int] = field(default_factory=dict)
    #: anything else a scenario wants to keep (its own objects, flags)
    extra: dict[str, Any] = field(default_factory=dict)
    #: leak-scan verdicts by end state, shared by the runs of one exploration
    leak_cache: dict[Any, str] | None = None
    _fp: tuple[Any, ...] | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, k: Kernel) -> World:
        """Attach the cgroup and memcg globals the seed uses and make the root memcg."""
        g = CgroupGlobals.__new__(CgroupGlobals)
        g.css_set_lock = Spinlock("css_set_lock")
        g.cgroup_mutex = Mutex("cgroup_mutex")
        k.heap.adopt(g.css_set_lock, "cgroup_init", static=True)
        k.heap.adopt(g.cgroup_mutex, "cgroup_init", static=True)
        g.subsystems = []
        g.css_set_table = {}
        k.cgroup = g
        mg = MemcgGlobals.__new__(MemcgGlobals)
        mg.root_mem_cgroup = None
        mg.memcg_kmem_enabled_key = 0
        mg.stocks = [MemcgStockPcp(c) for c in range(k.nr_cpus)]
        for st in mg.stocks:
            k.heap.adopt(st, "mem_cgroup_init", static=True)
        mg.percpu_charge_mutex = Mutex("percpu_charge_mutex")
        mg.reclaim = None
        mg.reparent_log = []
        mg.flush_slab_vmstats_at_offline = False
        mg.stranded_bytes_total = 0
        mg.extra_css_refs = []
        mg.extra_charged_bytes = []
        mg.extra_css_refs_map = []
        mg.extra_charged_bytes_map = []
        mg.extra_ptr_refs_map = []
        mg.obj_stocks = []
        mg.memory_cgrp_id = 0
        mg.list_lrus = []
        # Left out (their paths are not in the racing code): the kmemcg and memcg id spaces,
        # the system workqueue and its kworkers.
        k.memcg = mg
        root = MemCgroup(k.nr_cpus)
        k.heap.adopt(root, "mem_cgroup_init", static=True)
        root.flags = CSS_NO_REF | CSS_ONLINE
        page_counter_init(root.memory, None)
        mg.root_mem_cgroup = root
        w = cls(k=k, root=root)
        w.memcgs["/"] = root
        return w

    def memcg(self, name: str, parent: str = "/", *, online: bool = True, pins: int = 1,
              count: int | None = None, kmem_ptr: bool = True, cls: type[MemCgroup] = MemCgroup
              ) -> MemCgroup:
        """A memcg below ``parent``: online (percpu refcount) or removed (killed, atomic).

        ``count`` is its css reference count now (default ``pins``); ``pins`` the references
        outside ptrs and stocks expected once the tasks finish.  With ``kmem_ptr`` its own
        mem_cgroup_ptr is created by the design's memcg_init_kmem_memcg_ptr(), as
        memcg_online_kmem() does in css_alloc.
        """
        k = self.k
        par = self.memcgs[parent]
        m = cls(k.nr_cpus)
        k.heap.adopt(m, "mem_cgroup_css_alloc")
        m.parent = par
        m._kname = name  # type: ignore[attr-defined]
        page_counter_init(m.memory, par.memory)
        m.flags = CSS_ONLINE if online else CSS_DYING
        m.refcnt.release = world_css_release
        n = pins if count is None else count
        if online:
            percpu_ref_init(k, m.refcnt, world_css_release, 0)
            area = m.refcnt.percpu
            assert area is not None
            area.counters[0] += n - 1
        else:
            # Killed and confirmed: atomic, DEAD, per-cpu counters freed (5.3).
            m.refcnt.count = n
            m.refcnt.flags = _ATOMIC | _DEAD
            m.refcnt.percpu = None
            m.refcnt._kexited = True
        self.memcgs[name] = m
        self.pins[name] = pins
        if pins:
            k.heap.roots[m._koid] = m
        if kmem_ptr:
            ret = k.design.memcg_init_kmem_memcg_ptr(k, m)  # type: ignore[attr-defined]
            assert ret == 0, f"memcg_init_kmem_memcg_ptr({name}) failed: {ret}"
            m.kmem_state = KmemState.KMEM_ONLINE
            assert m.kmem_memcg_ptr is not None
            self.ptrs[name] = m.kmem_memcg_ptr
        return m

    def inherited_ptr(self, name: str, on: str) -> MemCgroupPtr:
        """A ptr of a removed (and already freed) descendant, reparented onto memcg ``on``:
        killed and confirmed (atomic), ``ptr->memcg == on``, on ``on``'s list, holding one css
        reference on ``on`` (which the caller counts in ``on``'s count, not in its pins).
        Its count is the references of the objects created on it with :meth:`obj`."""
        k = self.k
        m = self.memcgs[on]
        p = kmalloc(k, MemCgroupPtr, site="memcg_init_kmem_memcg_ptr", zero=True)
        assert p is not None
        ref = p.refcnt
        ref.count = 0  # the objects holding it add theirs (World.obj)
        ref.flags = _ATOMIC | _DEAD
        ref.percpu = None
        ref._kexited = True
        release = getattr(k.design, "memcg_ptr_release", memcg_ptr_release)
        ref.release = release
        p.memcg = m
        list_add(k, p.list, m.kmem_memcg_ptr_list)
        self.ptrs[name] = p
        return p

    def obj(self, name: str, ptr: MemCgroupPtr | None, size: int = 64, *,
            rcu_freed: bool = False) -> KmallocObject:
        """An accounted kmalloc-``size`` object held by the world; with ``ptr``, it holds a
        reference on that ptr (its ownership entry), added here to the ptr's count.  An
        ``rcu_freed`` object is freed with kfree_rcu() (as dentries are), so RCU readers may
        look at it while it is being freed."""
        k = self.k
        cls = RcuFreedObject if rcu_freed else KmallocObject
        o = kmalloc(k, cls, size, site="kmalloc", zero=True)
        assert o is not None
        if ptr is not None:
            o.memcg_ptr = ptr
            o._kaccounted = True  # type: ignore[attr-defined]
            ref = ptr.refcnt
            if ref.flags & _ATOMIC:
                ref.count += 1
            else:
                assert ref.percpu is not None
                ref.percpu.counters[0] += 1
        self.objects[name] = o
        k.heap.roots[o._koid] = o
        return o

    def slot(self, name: str, value: Any) -> RcuSlot:
        """A static RCU-protected pointer to ``value``, kept in :attr:`extra` under ``name``."""
        sl = RcuSlot(value)
        self.k.heap.adopt(sl, "rcu_slot", static=True)
        self.extra[name] = sl
        return sl

    def drop(self, name: str) -> None:
        """The world lets go of object ``name`` (a task frees it): no longer a root."""
        o = self.objects[name]
        self.k.heap.roots.pop(o._koid, None)

    # ------------------------------------------------------------------ checks
    def expected_css_refs(self, name: str) -> int:
        """References that must be held on memcg ``name`` once every task has finished."""
        m = self.memcgs[name]
        n = self.pins.get(name, 0) + self._child_pins(m)
        for p in self.k.heap.live.values():
            if isinstance(p, MemCgroupPtr) and p.memcg is m and m.kmem_memcg_ptr is not p:
                # The seed's rule: a ptr holds a css reference on the memcg it points to,
                # except its own memcg's published ptr (taken only at reparenting).
                n += 1
        for st in self.k.memcg.stocks:
            if st.cached is m:
                n += st.nr_pages
            if st.subpage_cached is m:
                n += 1
        return n

    def _child_pins(self, m: MemCgroup) -> int:
        """init_and_link_css(): every child css not yet freed pins its parent."""
        return sum(1 for c in self.memcgs.values() if c.parent is m and not c._kstate)

    def check(self, k: Kernel) -> None:
        """The quiescent checkers: css and ptr counts, dangling ownership entries, leaks."""
        for name, m in self.memcgs.items():
            if m.flags & CSS_NO_REF:
                continue
            expected = self.expected_css_refs(name)
            if m._kstate:
                if expected:
                    k.report(ViolationKind.ACCOUNTING,
                             f"memcg {name} was freed while {expected} references are held on it",
                             obj=m)
                continue
            actual = percpu_ref_read(m.refcnt)
            if actual != expected:
                k.report(ViolationKind.ACCOUNTING,
                         f"css refcount of memcg {name} is {actual}, but {expected} references "
                         "are held on it", obj=m, field="refcnt")
        held: dict[int, int] = {}
        for o in k.heap.live.values():
            p = getattr(o, "memcg_ptr", None)
            if isinstance(p, MemCgroupPtr):
                if p._kstate:
                    k.report(ViolationKind.USE_AFTER_FREE,
                             f"{o.kname()} still references freed {p.kname()}", obj=o)
                held[id(p)] = held.get(id(p), 0) + 1
        for p in list(k.heap.live.values()):
            if not isinstance(p, MemCgroupPtr):
                continue
            expected = held.get(id(p), 0) + (0 if p.refcnt.flags & _DEAD else 1)
            actual = percpu_ref_read(p.refcnt)
            if actual != expected:
                k.report(ViolationKind.ACCOUNTING,
                         f"{p.kname()} refcount is {actual}, but {expected} references are "
                         "held on it", obj=p, field="refcnt")
            elif expected == 0:
                k.report(ViolationKind.LEAK,
                         f"{p.kname()} has no references left but was never released", obj=p)
        self.check_leaks(k)

    def check_leaks(self, k: Kernel) -> None:
        """kmemleak: live allocations nothing reaches.  The scan's verdict is a function of
        the end state, so it is remembered per (live allocations, fingerprint) across the
        schedules of one exploration (:attr:`leak_cache`)."""
        key = None
        if self.leak_cache is not None:
            key = (tuple(k.heap.live), self.end_fingerprint())
            if key in self.leak_cache:
                msg = self.leak_cache[key]
                if msg:
                    k.report(ViolationKind.LEAK, msg)
                return
        leaked = k.heap.unreachable()
        msg = ""
        if leaked:
            msg = "unreferenced objects: " + ", ".join(
                o.kname() + (f" from {o._ksite}" if o._ksite else "") for o in leaked[:10])
        if key is not None and self.leak_cache is not None:
            self.leak_cache[key] = msg
        if msg:
            k.report(ViolationKind.LEAK, msg)

    def end_fingerprint(self) -> tuple[Any, ...]:
        """:meth:`fingerprint`, computed once per run."""
        if self._fp is None:
            self._fp = self.fingerprint()
        return self._fp

    def css_count(self, name: str) -> int:
        """The css count of memcg ``name`` as a whole-state reader sees it (no step)."""
        return percpu_ref_read(self.memcgs[name].refcnt)

    def ptrs_on(self, name: str) -> list[MemCgroupPtr]:
        """The ptrs on memcg ``name``'s kmem_memcg_ptr_list (no step)."""
        return list_entries(self.memcgs[name].kmem_memcg_ptr_list)

    def usage_pages(self, name: str) -> int:
        return page_counter_read(self.memcgs[name].memory)

    def fingerprint(self) -> tuple[Any, ...]:
        """A summary of the end state: what is freed, counts, and where each ptr points."""
        out: list[Any] = []
        for name, m in self.memcgs.items():
            if m.flags & CSS_NO_REF:
                out.append((name, tuple(p._koid for p in self.ptrs_on(name))))
                continue
            out.append((name, int(m._kstate), -1 if m._kstate else percpu_ref_read(m.refcnt),
                        m.memory.usage))
        for name, p in self.ptrs.items():
            mm = p.memcg
            out.append((name, int(p._kstate), percpu_ref_read(p.refcnt),
                        getattr(mm, "_kname", None)))
        for st in self.k.memcg.stocks:
            out.append((getattr(st.cached, "_kname", None), st.nr_pages,
                        getattr(st.subpage_cached, "_kname", None), st.nr_bytes))
        return tuple(out)


class RcuSlot(KObject):
    """An RCU-protected pointer through which readers find an object (a hash chain's head,
    say): ``rcu_dereference(slot->ptr)`` under rcu_read_lock()."""

    ktype = "struct rcu_slot"

    def __init__(self, ptr: Any = None) -> None:
        super().__init__()
        self.ptr = ptr


class RcuFreedObject(KmallocObject):
    """An accounted object freed after a grace period (``kfree_rcu(obj, rcu)``)."""

    def __init__(self, size: int = 64) -> None:
        super().__init__(size)
        self.rcu = RcuHead(self, "rcu")


def world_css_release(k: Kernel, ref: PercpuRef) -> None:
    """css_release() of a world memcg: free it after a grace period (see the module doc)."""
    m = ref._kowner
    assert isinstance(m, MemCgroup)
    if k.tracing:
        k.trace("css_release", getattr(m, "_kname", m.kname()))
    call_rcu(k, m.destroy_rwork.rcu, _world_css_free_rcu)


def _world_css_free_rcu(k: Kernel, head: RcuHead) -> None:
    """css_free_rwork_fn() -> mem_cgroup_css_free(): free the memcg, put the parent's css."""
    m = head._kowner
    assert isinstance(m, MemCgroup)
    parent = m.parent
    free_percpu(k, m.refcnt.percpu)
    kfree(k, m)
    if parent is not None and not parent.flags & CSS_NO_REF:
        from memcgsim.cgroup.cgroup import css_put

        css_put(k, parent)
