"""The RFC's slab free hook racing the offline of the object's memcg.

memcg_slab_free_hook() (the model's reconstruction of "[PATCH RFC 10/14]", which is not in the
index) reads ``ptr->memcg`` under rcu_read_lock() and gives the object's bytes back to this
CPU's byte stock, refill_subpage_stock(), which takes a css reference with css_get() when the
stock switches to that memcg.  If the memcg is being taken offline, the reparenting may move
the ptr to the parent and drop the memcg's last references between the read and the
css_get(): a get from zero, the bug 5.10's get_mem_cgroup_from_objcg() css_tryget loop exists
to avoid (eefbfa7fd678).

    memcgsim check examples/free_hook_vs_offline.py --strategy dpor
"""

from __future__ import annotations

from memcgsim.explore import Scenario, TaskSpec, World
from memcgsim.explore.scenarios import memcg_offline
from memcgsim.kernel.heap import kfree
from memcgsim.kernel.kernel import Kernel
from memcgsim.mm.slab import memcg_slab_free_hook


def setup(k: Kernel) -> World:
    w = World.create(k)
    w.memcg("/a", pins=1, count=2)
    # /a/b removed: kill_css()'s pin and the id's pin
    w.memcg("/a/b", "/a", online=False, pins=0, count=2)
    w.obj("obj", w.ptrs["/a/b"])
    return w


def free(k: Kernel, w: World) -> None:
    """kfree() of the object: the slab free hook, then the free itself."""
    o = w.objects["obj"]
    memcg_slab_free_hook(k, o)
    w.drop("obj")
    kfree(k, o)


def offline(k: Kernel, w: World) -> None:
    memcg_offline(k, w.memcgs["/a/b"], w.memcgs["/a"])


SCENARIO = Scenario(
    name="free-hook-vs-offline",
    description="memcg_slab_free_hook() uncharges through ptr->memcg while /a/b goes offline",
    setup=setup,
    tasks=(TaskSpec("free", 0, free), TaskSpec("offline", 1, offline)),
)
