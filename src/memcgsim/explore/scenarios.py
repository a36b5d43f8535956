"""The built-in scenarios: the seed's races, each holding only the racing code.

Each scenario starts where the race starts (the kill of the removed memcg has been confirmed
and its offline work is about to reparent) and runs the racing kernel paths as tasks on their
own CPUs, with the RCU grace-period kthread and the per-CPU callback kthreads: the explorer
chooses when grace periods start and end and when the percpu_ref switch, the ptr release and
kfree_rcu callbacks run.

(a) ``reader-vs-offline``   mem_cgroup_get_kmem_ptr() on a memcg while it is removed
(b) ``release-vs-reparent`` the last object of an inherited ptr freed while its memcg offlines
(c) ``nested-offline``      a child offlines while a grandchild's ptr it inherited is released,
                             then the parent offlines
(d) ``obj-to-memcg-vs-offline`` mem_cgroup_from_obj() under RCU and a charge, racing offline
(e) ``objcg-get-memcg-vs-offline`` 5.9's get_mem_cgroup_from_objcg() racing
                             memcg_reparent_objcgs() (see :mod:`memcgsim.explore.objcg`)
"""

from __future__ import annotations

from memcgsim.cgroup.cgroup import css_put
from memcgsim.explore.runtime import Scenario, TaskSpec
from memcgsim.explore.world import RcuFreedObject, World
from memcgsim.kernel.heap import GFP_KERNEL, kfree, kfree_rcu
from memcgsim.kernel.kernel import Kernel
from memcgsim.kernel.rcu import rcu_assign_pointer, rcu_dereference, rcu_read_lock, rcu_read_unlock
from memcgsim.mm.memcontrol import (
    MemCgroup,
    __memcg_kmem_charge_subpage,
    mem_cgroup_ptr_put,
)
from memcgsim.mm.slab import memcg_slab_post_alloc_hook

__all__ = [
    "BUILTINS",
    "memcg_offline",
]

OBJ_SIZE = 64


def memcg_offline(k: Kernel, memcg: MemCgroup, parent: MemCgroup) -> None:
    """css_killed_work_fn() for a memcg whose kill is confirmed: offline_css() ->
    mem_cgroup_css_offline() -> memcg_offline_kmem() -> memcg_reparent_kmem_memcg_ptr(), then
    mem_cgroup_id_put() (the id's pin on the css) and css_killed_work_fn()'s css_put() (the
    pin kill_css() took).

    Model simplification: the rest of memcg_offline_kmem() (kmemcg_id hand-over, list_lru
    drain) and of mem_cgroup_css_offline() (event and stock draining) touches nothing these
    scenarios share and is left out.
    """
    k.design.memcg_reparent_kmem_memcg_ptr(k, memcg, parent)  # type: ignore[attr-defined]
    css_put(k, memcg)  # mem_cgroup_id_put()
    css_put(k, memcg)  # css_killed_work_fn(): kill_css()'s css_get()


def memcg_free_last_object(k: Kernel, w: World, obj: str) -> None:
    """The free of an accounted object holding the last reference on its ptr:
    memcg_slab_free_hook() clears the ownership entry and drops the ptr reference; the put
    that reaches zero calls memcg_ptr_release().  (The uncharge the hook also does is
    explored by ``obj-to-memcg-vs-offline``.)"""
    o = w.objects[obj]
    ptr = k.load(o, "memcg_ptr")
    k.store(o, "memcg_ptr", None)
    mem_cgroup_ptr_put(k, ptr)
    w.drop(obj)
    if isinstance(o, RcuFreedObject):
        kfree_rcu(k, o, "rcu")
    else:
        kfree(k, o)


# ---------------------------------------------------------------------- (a)
def _setup_reader_vs_offline(k: Kernel) -> World:
    w = World.create(k)
    # /a: its initial reference and /a/b's pin on its parent (dropped when /a/b is freed)
    w.memcg("/a", pins=1, count=2)
    # /a/b removed: kill_css()'s pin, the id's pin, and the reader's lookup reference
    w.memcg("/a/b", "/a", online=False, pins=0, count=3)
    w.obj("new", None)
    return w


def _reader_alloc(k: Kernel, w: World) -> None:
    """slab_post_alloc_hook() of an allocation charged to /a/b: memcg_slab_post_alloc_hook()
    -> mem_cgroup_get_kmem_ptr(), ptr get for the object, put of the lookup references."""
    memcg_slab_post_alloc_hook(k, w.memcgs["/a/b"], w.objects["new"], OBJ_SIZE)


def _offline_b(k: Kernel, w: World) -> None:
    memcg_offline(k, w.memcgs["/a/b"], w.memcgs["/a"])


def _check_reader(k: Kernel, w: World) -> None:
    o = w.objects["new"]
    assert o.memcg_ptr is not None, "the new object got no mem_cgroup_ptr"
    assert o.memcg_ptr.memcg is w.memcgs["/a"], (
        f"the new object's ptr points to {o.memcg_ptr.memcg!r}, not /a")


READER_VS_OFFLINE = Scenario(
    name="reader-vs-offline",
    description="mem_cgroup_get_kmem_ptr() (an allocation's post-alloc hook) on /a/b while "
                "/a/b goes offline: its ptr unpublished, killed and reparented to /a",
    setup=_setup_reader_vs_offline,
    tasks=(TaskSpec("alloc", 0, _reader_alloc), TaskSpec("offline", 1, _offline_b)),
    check=_check_reader, snapshot=True,
)


# ---------------------------------------------------------------------- (b)
def _setup_release_vs_reparent(k: Kernel) -> World:
    w = World.create(k)
    w.memcg("/a", pins=1, count=2)
    # /a/b removed; pins: kill_css, id; plus the reference of the ptr inherited from /a/b/c
    w.memcg("/a/b", "/a", online=False, pins=0, count=3)
    c = w.inherited_ptr("/a/b/c", on="/a/b")
    w.obj("last", c)
    return w


def _free_last(k: Kernel, w: World) -> None:
    memcg_free_last_object(k, w, "last")


def _check_release(k: Kernel, w: World) -> None:
    assert w.ptrs["/a/b/c"]._kstate, "the inherited ptr was not freed"
    left = [p for p in w.ptrs_on("/a") if p is not w.ptrs["/a"]]
    assert not left, f"ptrs other than its own left on /a's list: {left}"


RELEASE_VS_REPARENT = Scenario(
    name="release-vs-reparent",
    description="the last object of the ptr /a/b inherited from /a/b/c is freed (release: "
                "list_del under css_set_lock, css_put, kfree_rcu) while /a/b goes offline "
                "(xchg loop, splice, css reference move)",
    setup=_setup_release_vs_reparent,
    tasks=(TaskSpec("free", 0, _free_last), TaskSpec("offline", 1, _offline_b)),
    check=_check_release, snapshot=True,
)


# ---------------------------------------------------------------------- (c)
def _setup_nested(k: Kernel) -> World:
    w = World.create(k)
    # /a removed: kill_css, id, and /a/b's pin on its parent
    w.memcg("/a", online=False, pins=0, count=3)
    # /a/b removed: kill_css, id, and the ptr inherited from /a/b/c
    w.memcg("/a/b", "/a", online=False, pins=0, count=3)
    c = w.inherited_ptr("/a/b/c", on="/a/b")
    w.obj("last", c)
    return w


def _offline_b_then_a(k: Kernel, w: World) -> None:
    """css_killed_work_fn()'s loop: offline /a/b, then its parent /a, whose last online
    child it was."""
    memcg_offline(k, w.memcgs["/a/b"], w.memcgs["/a"])
    memcg_offline(k, w.memcgs["/a"], w.root)


def _check_nested(k: Kernel, w: World) -> None:
    assert not w.ptrs_on("/"), f"ptrs left on the root's list: {w.ptrs_on('/')}"
    for name in ("/a", "/a/b"):
        assert w.memcgs[name]._kstate, f"{name} was never freed"


NESTED_OFFLINE = Scenario(
    name="nested-offline",
    description="/a/b offlines while the ptr it inherited from /a/b/c is released, then /a "
                "offlines and moves everything to the root",
    setup=_setup_nested,
    tasks=(TaskSpec("free", 0, _free_last), TaskSpec("offline", 1, _offline_b_then_a)),
    check=_check_nested, snapshot=True,
)


# ---------------------------------------------------------------------- (d)
def _setup_obj_to_memcg(k: Kernel) -> World:
    w = World.create(k)
    w.memcg("/a", pins=1, count=2)
    # /a/b removed: kill_css, id
    w.memcg("/a/b", "/a", online=False, pins=0, count=2)
    # An object freed after a grace period (a dentry), holding the last reference of /a/b's
    # ptr once /a/b's kill drops the initial one.
    w.obj("obj", w.ptrs["/a/b"], rcu_freed=True)
    w.slot("lookup", w.objects["obj"])
    return w


def _obj_charge(k: Kernel, w: World) -> None:
    """mem_cgroup_from_obj() under RCU on an object that may be being freed: its ownership
    entry, then ptr->memcg with a css reference (get_mem_cgroup_from_ptr(), the css_tryget
    loop); then a byte charge to that memcg (__memcg_kmem_charge_subpage()) and the put."""
    rcu_read_lock(k)
    o = rcu_dereference(k, w.extra["lookup"], "ptr")
    ptr = k.load(o, "memcg_ptr") if o is not None else None
    memcg = None
    if ptr is not None:
        memcg = k.design.get_mem_cgroup_from_ptr(k, ptr)  # type: ignore[attr-defined]
    rcu_read_unlock(k)
    if memcg is None:
        w.extra["charged"] = (None, 0)
        return
    ret = __memcg_kmem_charge_subpage(k, memcg, OBJ_SIZE, GFP_KERNEL)
    w.extra["charged"] = (memcg, ret)
    css_put(k, memcg)


def _free_obj(k: Kernel, w: World) -> None:
    """Unpublish the object from its RCU lookup structure, then free it."""
    rcu_assign_pointer(k, w.extra["lookup"], "ptr", None)
    memcg_free_last_object(k, w, "obj")


def _check_obj_charge(k: Kernel, w: World) -> None:
    memcg, ret = w.extra["charged"]
    assert ret == 0, f"the charge failed: {ret}"
    assert memcg in (None, w.memcgs["/a/b"], w.memcgs["/a"]), "charged an unrelated memcg"


OBJ_TO_MEMCG_VS_OFFLINE = Scenario(
    name="obj-to-memcg-vs-offline",
    description="a reader maps an RCU-freed object to its memcg under RCU (like "
                "mem_cgroup_from_obj), takes a css reference on it and charges it, while "
                "/a/b goes offline and the object's owner frees it (dropping the ptr's last "
                "reference)",
    setup=_setup_obj_to_memcg,
    tasks=(TaskSpec("charge", 0, _obj_charge), TaskSpec("offline", 1, _offline_b),
           TaskSpec("free", 1, _free_obj)),
    check=_check_obj_charge, snapshot=True,
)


def _builtins() -> dict[str, Scenario]:
    from memcgsim.explore.objcg import OBJCG_GET_MEMCG_VS_OFFLINE

    return {s.name: s for s in (READER_VS_OFFLINE, RELEASE_VS_REPARENT, NESTED_OFFLINE,
                                OBJ_TO_MEMCG_VS_OFFLINE, OBJCG_GET_MEMCG_VS_OFFLINE)}


#: name -> scenario, in the issue's order (a)-(e)
BUILTINS: dict[str, Scenario] = _builtins()
