"""Scenario (e): 5.9's get_mem_cgroup_from_objcg() tryget loop racing memcg_reparent_objcgs().

TEMPORARY: the obj_cgroup design (struct obj_cgroup, issue 3) is being written in parallel and
is not on main yet, so this module models the few kernel functions the race needs, minimally
and only for the explorer, from mm/memcontrol.c of 5.10 (the merged form of the seed's RFC):

- ``memcg_reparent_objcgs()``: unpublish the memcg's objcg, then under css_set_lock (objcg_lock
  from 5.15) repoint it and every objcg on the memcg's list to the parent, moving one css
  reference per objcg, splice the list, and only then kill the objcg's refcount (the RFC
  killed its ptr first);
- ``get_mem_cgroup_from_objcg()`` (5.12; open-coded in obj_cgroup_charge() since 5.9):
  ``rcu_read_lock(); retry: memcg = obj_cgroup_memcg(objcg); if (!css_tryget(&memcg->css))
  goto retry;`` which ends only because a reparenting points the objcg at a live parent;
- ``obj_cgroup_release()``: unlink under the lock, put the memcg it points to, free after RCU.

Once the objcg design lands on main this scenario should call it instead.
"""

from __future__ import annotations

from collections.abc import Callable

from memcgsim.cgroup.cgroup import CSS_NO_REF, css_get, css_put, css_tryget
from memcgsim.explore.runtime import Scenario, TaskSpec
from memcgsim.explore.world import World
from memcgsim.kernel.heap import kfree_rcu, kzalloc
from memcgsim.kernel.kernel import Kernel
from memcgsim.kernel.list import ListHead, list_add, list_del, list_for_each_entry, list_splice
from memcgsim.kernel.locking import (
    spin_lock_irq,
    spin_lock_irqsave,
    spin_unlock_irq,
    spin_unlock_irqrestore,
)
from memcgsim.kernel.objects import KObject
from memcgsim.kernel.percpu_ref import (
    PercpuRef,
    percpu_ref_exit,
    percpu_ref_init,
    percpu_ref_kill,
    percpu_ref_read,
)
from memcgsim.kernel.rcu import (
    RcuHead,
    rcu_assign_pointer,
    rcu_read_lock,
    rcu_read_unlock,
    rcu_replace_pointer,
)
from memcgsim.kernel.violations import ViolationKind
from memcgsim.mm.memcontrol import MemCgroup

__all__ = [
    "OBJCG_GET_MEMCG_VS_OFFLINE",
    "ObjCgroup",
    "ObjcgMemCgroup",
    "get_mem_cgroup_from_objcg",
    "memcg_reparent_objcgs",
    "obj_cgroup_release",
]


class ObjCgroup(KObject):
    """struct obj_cgroup (5.9): refcnt, memcg, and a union of list_head and rcu_head."""

    ktype = "struct obj_cgroup"
    ksize = 64

    def __init__(self) -> None:
        super().__init__()
        self.refcnt = PercpuRef(self, "refcnt")
        self.memcg: MemCgroup | None = None
        self.list = ListHead(self, "list")
        self.rcu = RcuHead(self, "rcu", union=self.list)


class ObjcgMemCgroup(MemCgroup):
    """struct mem_cgroup with 5.9's ``objcg`` (RCU) and ``objcg_list`` fields."""

    def __init__(self, nr_cpus: int = 1) -> None:
        super().__init__(nr_cpus)
        self.objcg: ObjCgroup | None = None
        self.objcg_list = ListHead(self, "objcg_list")


def obj_cgroup_release(k: Kernel, ref: PercpuRef) -> None:
    """obj_cgroup_release() (5.10, without the nr_charged_bytes uncharge)."""
    objcg = ref._kowner
    assert isinstance(objcg, ObjCgroup)
    g = k.cgroup
    flags = spin_lock_irqsave(k, g.css_set_lock)
    memcg = k.load(objcg, "memcg")
    list_del(k, objcg.list)
    css_put(k, memcg)  # mem_cgroup_put()
    spin_unlock_irqrestore(k, g.css_set_lock, flags)
    percpu_ref_exit(k, ref)
    kfree_rcu(k, objcg, "rcu")


def obj_cgroup_alloc(k: Kernel, memcg: ObjcgMemCgroup) -> ObjCgroup:
    """obj_cgroup_alloc() + memcg_online_kmem()'s publication (no css reference)."""
    objcg = kzalloc(k, ObjCgroup)
    assert objcg is not None
    ret = percpu_ref_init(k, objcg.refcnt, obj_cgroup_release, 0)
    assert ret == 0
    objcg.memcg = memcg
    rcu_assign_pointer(k, memcg, "objcg", objcg)
    return objcg


def memcg_reparent_objcgs(k: Kernel, memcg: ObjcgMemCgroup, parent: ObjcgMemCgroup) -> None:
    """memcg_reparent_objcgs() (5.9/5.10)."""
    g = k.cgroup
    objcg = rcu_replace_pointer(k, memcg, "objcg", None, True)
    assert isinstance(objcg, ObjCgroup)
    spin_lock_irq(k, g.css_set_lock)
    # 1) Ready to reparent active objcg.
    k.xchg(objcg, "memcg", parent)
    css_get(k, parent)
    list_add(k, objcg.list, parent.objcg_list)
    # 2) Reparent active objcg and already reparented objcgs to parent.
    for iter_ in list_for_each_entry(k, memcg.objcg_list):
        css_get(k, parent)
        k.xchg(iter_, "memcg", parent)
        css_put(k, memcg)
    # 3) Move already reparented objcgs to the parent's list
    list_splice(k, memcg.objcg_list, parent.objcg_list)
    spin_unlock_irq(k, g.css_set_lock)
    percpu_ref_kill(k, objcg.refcnt)


def _changed(objcg: ObjCgroup, memcg: MemCgroup) -> Callable[[], bool]:
    return lambda: objcg.memcg is not memcg


def get_mem_cgroup_from_objcg(k: Kernel, objcg: ObjCgroup) -> MemCgroup:
    """get_mem_cgroup_from_objcg(): loop on css_tryget() of obj_cgroup_memcg(objcg).

    As in :func:`memcgsim.mm.memcontrol.get_mem_cgroup_from_ptr`, a failed tryget spins until
    objcg->memcg changes instead of re-reading in an unbounded loop.
    """
    rcu_read_lock(k)
    while True:
        memcg = k.load(objcg, "memcg")
        if css_tryget(k, memcg):
            break
        k.wait_event(_changed(objcg, memcg), "get_mem_cgroup_from_objcg() retry", sleep=False)
    rcu_read_unlock(k)
    assert isinstance(memcg, MemCgroup)
    return memcg


class ObjcgWorld(World):
    """A world whose memcgs carry obj_cgroups instead of mem_cgroup_ptrs."""

    def objcg(self, memcg: str) -> ObjCgroup:
        m = self.memcgs[memcg]
        assert isinstance(m, ObjcgMemCgroup)
        objcg = obj_cgroup_alloc(self.k, m)
        self.extra["objcg " + memcg] = objcg
        return objcg

    def expected_css_refs(self, name: str) -> int:
        m = self.memcgs[name]
        n = self.pins.get(name, 0) + self._child_pins(m)
        for o in self.k.heap.live.values():
            if isinstance(o, ObjCgroup) and o.memcg is m and getattr(m, "objcg", None) is not o:
                n += 1
        return n

    def check(self, k: Kernel) -> None:
        super().check(k)
        for o in list(k.heap.live.values()):
            if isinstance(o, ObjCgroup):
                held = sum(1 for x in self.extra.get("holders", ()) if x is o)
                expected = held + (0 if o.refcnt.flags & 2 else 1)
                if percpu_ref_read(o.refcnt) != expected:
                    k.report(ViolationKind.ACCOUNTING,
                             f"{o.kname()} refcount is {percpu_ref_read(o.refcnt)}, but "
                             f"{expected} references are held on it", obj=o)


def _setup(k: Kernel) -> World:
    w = ObjcgWorld.create(k)
    assert isinstance(w, ObjcgWorld)
    a = w.memcg("/a", pins=1, count=2, kmem_ptr=False, cls=ObjcgMemCgroup)
    b = w.memcg("/a/b", "/a", online=False, pins=0, count=2, kmem_ptr=False,
                cls=ObjcgMemCgroup)
    assert isinstance(a, ObjcgMemCgroup) and isinstance(b, ObjcgMemCgroup)
    assert not a.flags & CSS_NO_REF
    w.objcg("/a")
    objcg = w.objcg("/a/b")
    # An accounted object of /a/b holds a reference on its objcg (obj_cgroup_get).
    area = objcg.refcnt.percpu
    assert area is not None
    area.counters[0] += 1
    w.extra["holders"] = [objcg]
    return w


def _get_memcg(k: Kernel, w: World) -> None:
    """An uncharge or charge through the object's objcg: get_mem_cgroup_from_objcg(), use,
    css_put()."""
    objcg = w.extra["objcg /a/b"]
    memcg = get_mem_cgroup_from_objcg(k, objcg)
    w.extra["got"] = memcg
    css_put(k, memcg)


def _offline(k: Kernel, w: World) -> None:
    """memcg_offline_kmem() -> memcg_reparent_objcgs(); mem_cgroup_id_put(); css_put()."""
    b, a = w.memcgs["/a/b"], w.memcgs["/a"]
    assert isinstance(b, ObjcgMemCgroup) and isinstance(a, ObjcgMemCgroup)
    memcg_reparent_objcgs(k, b, a)
    css_put(k, b)
    css_put(k, b)


def _check(k: Kernel, w: World) -> None:
    assert w.extra["got"] in (w.memcgs["/a/b"], w.memcgs["/a"])
    assert w.memcgs["/a/b"]._kstate, "/a/b was never freed"


OBJCG_GET_MEMCG_VS_OFFLINE = Scenario(
    name="objcg-get-memcg-vs-offline",
    description="5.9's get_mem_cgroup_from_objcg() css_tryget loop on /a/b's objcg while "
                "/a/b goes offline (memcg_reparent_objcgs: repoint, then kill)",
    setup=_setup,
    tasks=(TaskSpec("get_memcg", 0, _get_memcg), TaskSpec("offline", 1, _offline)),
    check=_check,
)
