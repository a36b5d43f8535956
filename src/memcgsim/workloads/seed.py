"""The seed scenario: the life of /a/b's kernel objects across two rmdirs.

1. mkdir /a (with +memory for its children) and /a/b; a process in /a/b allocates
   ``nr_objects`` accounted objects, charged to b, each holding a reference on b's
   mem_cgroup_ptr.
2. The process moves out; rmdir /a/b.  After the grace periods and the offline work, b is
   freed, not dying: its ptr was repointed to a (one xchg, whatever the number of objects),
   a's css holds the reference the ptr moved there, a still pays for the objects.
3. rmdir /a while the objects live: a's own ptr and the one inherited from b move to the root.
4. The objects are freed: each uncharges through ``ptr->memcg`` (the root now) and drops its
   ptr reference; the last put releases the ptr (list_del, css put, kfree_rcu).

Each step returns a :class:`SeedStep` snapshot, so the demo can narrate and tests can assert.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from memcgsim.cgroup.cgroup import css_refcount
from memcgsim.kernel.heap import GFP_KERNEL_ACCOUNT, kfree, kmalloc
from memcgsim.kernel.kernel import Kernel
from memcgsim.kernel.list import list_entries
from memcgsim.kernel.objects import KState
from memcgsim.mm.memcontrol import (
    MemCgroup,
    MemCgroupPtr,
    memory_current_bytes,
)
from memcgsim.mm.slab import KmallocObject

__all__ = ["SeedResult", "SeedStep", "run_seed_scenario"]


@dataclass
class SeedStep:
    """What the scenario looked like after one step."""

    title: str
    what: str
    dying_under_root: int
    memory_current: dict[str, int]
    css_refs: dict[str, int | None]
    ptrs: dict[str, str]
    reparent_nr: list[int]
    live_objects: int


@dataclass
class SeedResult:
    steps: list[SeedStep] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)
    stranded_bytes: int = 0


def _snapshot(k: Kernel, title: str, what: str, memcgs: dict[str, MemCgroup],
              objs: list[KmallocObject]) -> SeedStep:
    ptrs: dict[str, str] = {}
    for name, m in memcgs.items():
        own = m.kmem_memcg_ptr
        if own is not None:
            ptrs[f"{name}.kmem_memcg_ptr"] = own.kname()
    seen: set[int] = set()
    for o in objs:
        p = o.memcg_ptr
        if isinstance(p, MemCgroupPtr) and id(p) not in seen:
            seen.add(id(p))
            target = p.memcg
            ptrs[p.kname().split("(")[0]] = (
                "->" + (target.cgroup.path if target and target.cgroup else "?"))
    root = k.memcg.root_mem_cgroup
    if root is not None:
        ptrs["root list"] = ", ".join(p.kname().split("(")[0]
                                      for p in list_entries(root.kmem_memcg_ptr_list)) or "empty"
    return SeedStep(
        title=title,
        what=what,
        dying_under_root=k.cgroup.root.nr_dying_descendants,
        memory_current={n: memory_current_bytes(k, m) for n, m in memcgs.items()
                        if m._kstate is not KState.FREED},
        css_refs={n: css_refcount(m) for n, m in memcgs.items() if m._kstate is not KState.FREED},
        ptrs=ptrs,
        reparent_nr=list(k.memcg.reparent_log),
        live_objects=sum(1 for o in objs if o._kstate is KState.ALIVE),
    )


def run_seed_scenario(k: Kernel, nr_objects: int = 1000, object_size: int = 64,
                      on_step: Callable[[SeedStep], None] | None = None) -> SeedResult:
    """Run the seed scenario on a freshly booted ``k``; see the module docstring."""
    res = SeedResult()

    def step(title: str, what: str) -> None:
        s = _snapshot(k, title, what, memcgs, objs)
        res.steps.append(s)
        if on_step is not None:
            on_step(s)

    objs: list[KmallocObject] = []
    k.mkdir("/a", subtree_control="+memory")
    k.mkdir("/a/b")
    memcgs = {"a": k.mem_cgroup("/a"), "b": k.mem_cgroup("/a/b")}
    proc = k.new_process("worker", "/a/b", cpu=0)

    def allocate(k: Kernel) -> list[KmallocObject]:
        out = []
        for _ in range(nr_objects):
            o = kmalloc(k, KmallocObject, object_size, gfp=GFP_KERNEL_ACCOUNT)
            assert o is not None, "accounted allocation failed"
            out.append(o)
        return out

    objs.extend(k.call(allocate, task=proc))
    for o in objs:
        k.heap.roots[o._koid] = o  # the user holds them
    k.settle()
    step("allocate", f"a task in /a/b allocated {nr_objects} accounted objects of "
                     f"{object_size} bytes; each holds a reference on b's mem_cgroup_ptr")
    k.attach(proc, "/")
    k.rmdir("/a/b")
    step("rmdir /a/b", "b is killed; its offline waits for a grace period")
    k.settle()
    step("settle", "b went offline: its ptr was repointed to a in one xchg; b is freed")
    k.rmdir("/a")
    k.settle()
    step("rmdir /a", "a's list (its own ptr and the one inherited from b) was repointed to the "
                     "root; a's own ptr, which no object used, was released; a is freed")

    def free_all(k: Kernel) -> None:
        for o in objs:
            kfree(k, o)

    k.call(free_all, task=proc)
    k.settle()
    step("free", "each free uncharged through ptr->memcg; the last put released the ptrs")
    res.leaked = [o.kname() for o in k.heap.unreachable()]
    res.stranded_bytes = k.memcg.stranded_bytes_total
    return res
