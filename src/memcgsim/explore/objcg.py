"""Scenario (e): 5.9's get_mem_cgroup_from_objcg() tryget loop racing memcg_reparent_objcgs().

The obj_cgroup model is :mod:`memcgsim.mm.objcg` (the objcg design, the seed as merged in 5.9):
memcg_reparent_objcgs() unpublishes the memcg's objcg, repoints it and the objcgs already
reparented to the memcg under css_set_lock, moving one css reference per objcg, splices them
onto the parent's list and only then kills the objcg; obj_cgroup_release() unlinks it and puts
the memcg it points to.  A reader holding an object's objcg reference takes the memcg with
get_mem_cgroup_from_objcg(): ``rcu_read_lock(); retry: memcg = obj_cgroup_memcg(objcg); if
(!css_tryget(&memcg->css)) goto retry;``, which terminates only because the reparenting points
the objcg at a live parent.

Exploration needs one change, in :class:`ExploredObjcgDesign`: the model's loop retries at
once, so a schedule that never runs the reparenting CPU would spin forever; here a failed
tryget spins on its CPU until ``objcg->memcg`` changes (the only thing that lets the retry
succeed), which has the same outcomes and bounded schedules.
"""

from __future__ import annotations

from collections.abc import Callable

from memcgsim.cgroup.cgroup import css_put, css_tryget
from memcgsim.designs.objcg import ObjcgDesign
from memcgsim.explore.runtime import Scenario, TaskSpec
from memcgsim.explore.world import World
from memcgsim.kernel.kernel import Kernel
from memcgsim.kernel.percpu_ref import percpu_ref_read
from memcgsim.kernel.rcu import rcu_read_lock, rcu_read_unlock
from memcgsim.kernel.violations import ViolationKind
from memcgsim.mm.memcontrol import MemCgroup
from memcgsim.mm.objcg import ObjCgroup, memcg_online_objcg, obj_cgroup_memcg

__all__ = ["OBJCG_GET_MEMCG_VS_OFFLINE", "ExploredObjcgDesign", "get_mem_cgroup_from_objcg"]


def _changed(objcg: ObjCgroup, memcg: MemCgroup) -> Callable[[], bool]:
    return lambda: objcg.memcg is not memcg


def get_mem_cgroup_from_objcg(k: Kernel, objcg: ObjCgroup) -> MemCgroup:
    """get_mem_cgroup_from_objcg() (5.12) with the spin of a failed tryget made a wait."""
    rcu_read_lock(k)
    while True:
        memcg = obj_cgroup_memcg(k, objcg)
        if css_tryget(k, memcg):
            break
        k.wait_event(_changed(objcg, memcg), "get_mem_cgroup_from_objcg() retry", sleep=False)
    rcu_read_unlock(k)
    return memcg


class ExploredObjcgDesign(ObjcgDesign):
    """The objcg design with the explorable tryget loop (see the module doc)."""

    def get_mem_cgroup_from_objcg(self, k: Kernel, objcg: ObjCgroup) -> MemCgroup:
        return get_mem_cgroup_from_objcg(k, objcg)


class ObjcgWorld(World):
    """A world whose memcgs carry obj_cgroups instead of mem_cgroup_ptrs."""

    def objcg(self, memcg: str) -> ObjCgroup:
        """Allocate and publish memcg's objcg, as 5.10's memcg_online_kmem() does."""
        m = self.memcgs[memcg]
        assert memcg_online_objcg(self.k, m) == 0
        objcg: ObjCgroup = m.objcg
        self.extra["objcg " + memcg] = objcg
        return objcg

    def expected_css_refs(self, name: str) -> int:
        m = self.memcgs[name]
        n = self.pins.get(name, 0) + self._child_pins(m)
        for o in self.k.heap.live.values():
            if isinstance(o, ObjCgroup) and o.memcg is m and m.objcg is not o \
                    and not o._kreleased:
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
    k.design = ExploredObjcgDesign()
    w = ObjcgWorld.create(k)
    assert isinstance(w, ObjcgWorld)
    w.memcg("/a", pins=1, count=2, kmem_ptr=False)
    # /a/b removed: kill_css()'s pin and the id's pin
    w.memcg("/a/b", "/a", online=False, pins=0, count=2, kmem_ptr=False)
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
    memcg = k.design.get_mem_cgroup_from_objcg(k, objcg)  # type: ignore[attr-defined]
    w.extra["got"] = memcg
    css_put(k, memcg)


def _offline(k: Kernel, w: World) -> None:
    """memcg_offline_kmem() -> memcg_reparent_objcgs(); mem_cgroup_id_put(); css_put()."""
    b, a = w.memcgs["/a/b"], w.memcgs["/a"]
    k.design.memcg_reparent_objcgs(k, b, a)  # type: ignore[attr-defined]
    css_put(k, b)
    css_put(k, b)


def _check(k: Kernel, w: World) -> None:
    assert w.extra["got"] in (w.memcgs["/a/b"], w.memcgs["/a"])
    assert w.memcgs["/a/b"]._kstate, "/a/b was never freed"


OBJCG_GET_MEMCG_VS_OFFLINE = Scenario(
    name="objcg-get-memcg-vs-offline",
    description="5.9's get_mem_cgroup_from_objcg() css_tryget loop on /a/b's objcg while "
                "/a/b goes offline (memcg_reparent_objcgs: repoint, splice, then kill)",
    setup=_setup,
    tasks=(TaskSpec("get_memcg", 0, _get_memcg), TaskSpec("offline", 1, _offline)),
    check=_check, snapshot=True,
)
