"""struct obj_cgroup (5.9+): charging through the object stock, reparenting, release, and the
css_tryget loop of get_mem_cgroup_from_objcg()."""

from __future__ import annotations

import pytest

from memcgsim import Kernel
from memcgsim.cgroup.cgroup import CSS_DYING, css_put, css_refcount, sys_rmdir
from memcgsim.kernel.heap import GFP_KERNEL_ACCOUNT, kfree, kmalloc
from memcgsim.kernel.list import list_entries
from memcgsim.kernel.objects import KState
from memcgsim.kernel.percpu_ref import percpu_ref_is_dying, percpu_ref_read
from memcgsim.kernel.task import Task
from memcgsim.mm.memcontrol import (
    MemCgroup,
    MemcgStat,
    memcg_expected_css_refs,
    memcg_flush_percpu_vmstats,
    memcg_stock_refs,
    memory_current_bytes,
)
from memcgsim.mm.objcg import (
    ObjCgroup,
    ObjStock,
    drain_obj_stock,
    get_mem_cgroup_from_objcg,
    obj_cgroup_charge,
    obj_cgroup_uncharge,
)
from memcgsim.mm.slab import KmallocObject

NR = 1000
SIZE = 64


@pytest.fixture
def k() -> Kernel:
    return Kernel(nr_cpus=2, seed=1, design="objcg")


def _setup(k: Kernel, nr: int = NR) -> list[KmallocObject]:
    k.mkdir("/a", subtree_control="+memory")
    k.mkdir("/a/b")
    p = k.new_process("worker", "/a/b")

    def alloc(k: Kernel) -> list[KmallocObject]:
        return [kmalloc(k, KmallocObject, SIZE, gfp=GFP_KERNEL_ACCOUNT) for _ in range(nr)]  # type: ignore[misc]

    objs = k.call(alloc, task=p)
    for o in objs:
        k.heap.roots[o._koid] = o
    k.attach(p, "/")
    k.settle()
    return objs


def test_objects_hold_the_memcgs_objcg_and_no_css_reference(k: Kernel) -> None:
    objs = _setup(k)
    mb = k.mem_cgroup("/a/b")
    objcg = mb.objcg
    assert isinstance(objcg, ObjCgroup) and objcg.memcg is mb
    assert all(o.objcg is objcg for o in objs)
    # One reference per object, one for the stock caching it, and the initial one.
    stocks = sum(1 for st in k.memcg.obj_stocks if st.cached_objcg is objcg)
    assert percpu_ref_read(objcg.refcnt) == NR + stocks + 1
    # Byte charges pin no css: b's count is what the lifecycle holds, nothing per object.
    nr = css_refcount(mb)
    assert nr == memcg_expected_css_refs(k, mb)
    assert nr is not None and nr - memcg_stock_refs(k, mb) <= 4
    assert memory_current_bytes(k, mb) >= NR * SIZE


def test_charge_takes_whole_pages_and_stocks_the_rest(k: Kernel) -> None:
    k.mkdir("/a")
    p = k.new_process("worker", "/a")
    ma = k.mem_cgroup("/a")

    def charge(k: Kernel) -> tuple[int, int]:
        objcg = ma.objcg
        assert obj_cgroup_charge(k, objcg, GFP_KERNEL_ACCOUNT, 100) == 0
        st: ObjStock = k.memcg.obj_stocks[k.this_cpu.id]
        return st.nr_bytes, 0 if st.cached_objcg is objcg else 1

    stocked, other = k.call(charge, task=p)
    assert (stocked, other) == (k.page_size - 100, 0)
    # try_charge charged a batch; the page stock holds what the objcg did not take.
    assert memory_current_bytes(k, ma) == 32 * k.page_size


def test_drained_remainder_moves_to_nr_charged_bytes(k: Kernel) -> None:
    k.mkdir("/a")
    p = k.new_process("worker", "/a")
    ma = k.mem_cgroup("/a")

    def run(k: Kernel) -> int:
        objcg = ma.objcg
        obj_cgroup_charge(k, objcg, GFP_KERNEL_ACCOUNT, 100)
        obj_cgroup_uncharge(k, objcg, 100)
        drain_obj_stock(k, k.memcg.obj_stocks[k.this_cpu.id])
        return int(objcg.nr_charged_bytes)

    # The stock held a page's worth of bytes: whole pages are uncharged, no remainder.
    assert k.call(run, task=p) == 0
    k2 = Kernel(nr_cpus=2, seed=1, design="objcg")
    k2.mkdir("/a")
    p2 = k2.new_process("worker", "/a")
    m2 = k2.mem_cgroup("/a")

    def run2(k: Kernel) -> int:
        objcg = m2.objcg
        obj_cgroup_charge(k, objcg, GFP_KERNEL_ACCOUNT, 100)
        drain_obj_stock(k, k.memcg.obj_stocks[k.this_cpu.id])
        return int(objcg.nr_charged_bytes)

    assert k2.call(run2, task=p2) == k2.page_size - 100


def test_rmdir_repoints_objcg_to_parent_frees_child_and_kills_after_splice(k: Kernel) -> None:
    objs = _setup(k)
    a = k.lookup("/a")
    ma, mb = k.mem_cgroup("/a"), k.mem_cgroup("/a/b")
    objcg = mb.objcg
    k.rmdir("/a/b")
    k.settle()
    assert a.nr_dying_descendants == 0
    assert mb._kstate is KState.FREED
    assert objcg.memcg is ma and ma.objcg is not objcg
    assert objcg in list_entries(ma.objcg_list)
    assert k.call(lambda k: percpu_ref_is_dying(k, objcg.refcnt))
    # The moved objcg holds one reference on the parent, and a pays for b's objects.
    assert css_refcount(ma) == memcg_expected_css_refs(k, ma) + 1
    assert memory_current_bytes(k, ma) >= NR * SIZE
    assert all(o.objcg is objcg for o in objs)


def test_freeing_objects_after_reparent_uncharges_parent_and_releases_objcg(k: Kernel) -> None:
    objs = _setup(k)
    ma, mb = k.mem_cgroup("/a"), k.mem_cgroup("/a/b")
    objcg = mb.objcg
    k.rmdir("/a/b")
    k.settle()
    k.call(lambda k: [kfree(k, o) for o in objs])
    # Switch the stock away so that it drops its objcg reference.
    k.call(lambda k: drain_obj_stock(k, k.memcg.obj_stocks[k.this_cpu.id]))
    k.call(lambda k: drain_obj_stock(k, k.memcg.obj_stocks[k.this_cpu.id]), cpu=1)
    k.settle()
    assert objcg._kstate is KState.FREED
    assert objcg not in list_entries(ma.objcg_list)
    assert css_refcount(ma) == memcg_expected_css_refs(k, ma)
    # What is left is a's own stocked batch, not b's bytes.
    assert memory_current_bytes(k, ma) <= 32 * k.page_size
    assert k.heap.unreachable() == []


def test_rmdir_of_grandparent_moves_inherited_objcgs(k: Kernel) -> None:
    objs = _setup(k)
    mb = k.mem_cgroup("/a/b")
    objcg = mb.objcg
    k.rmdir("/a/b")
    k.settle()
    k.rmdir("/a")
    k.settle()
    root = k.memcg.root_mem_cgroup
    assert objcg.memcg is root
    assert k.cgroup.root.nr_dying_descendants == 0
    assert len(objs) == NR


def test_slab_stat_is_accounted_to_the_objcg_memcg(k: Kernel) -> None:
    _setup(k)
    mb = k.mem_cgroup("/a/b")
    memcg_flush_percpu_vmstats(k, mb, slab_only=False)
    assert mb.vmstats[MemcgStat.NR_SLAB_UNRECLAIMABLE] >= NR * SIZE


class _PauseReader:
    """Runs ``reader`` until it is about to css_tryget ``victim``, then everyone else until
    ``victim``'s count has reached zero, then the reader again."""

    def __init__(self, reader: Task, victim: MemCgroup) -> None:
        self.reader = reader
        self.victim = victim

    def pick_task(self, k: Kernel, runnable: list[Task]) -> Task:
        r = self.reader
        acc = r.pending
        about_to_tryget = (acc is not None and acc.field == "percpu_count_ptr"
                           and acc.obj.startswith(f"{self.victim._koid}:"))
        released = self.victim.refcnt.count == 0 and self.victim.flags & CSS_DYING
        others = [t for t in runnable if t is not r]
        if r in runnable and (not about_to_tryget or released or not others):
            return r
        return others[0]

    def decide(self, k: Kernel, what: str, probability: float) -> bool:
        return False


def test_get_mem_cgroup_from_objcg_retries_when_tryget_meets_a_released_memcg(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import memcgsim.mm.objcg as objcg_mod

    tries: list[tuple[str, bool]] = []
    real_tryget = objcg_mod.css_tryget

    def tryget(k: Kernel, css: MemCgroup) -> bool:  # type: ignore[override]
        ok = real_tryget(k, css)
        if k.current is not None and k.current.name == "reader":
            tries.append((css.cgroup.path if css.cgroup else "?", ok))
        return ok

    monkeypatch.setattr(objcg_mod, "css_tryget", tryget)
    k = Kernel(nr_cpus=2, seed=1, design="objcg")
    _setup(k, nr=10)
    ma, mb = k.mem_cgroup("/a"), k.mem_cgroup("/a/b")
    objcg = mb.objcg
    k.spawn(sys_rmdir, "/a/b", cpu=0, name="rmdir")
    # Run until the kill is confirmed: b's offline work is queued, not yet run.
    k.run(until=lambda: mb.online_cnt == 0)
    k.preemptive = True
    got: list[MemCgroup] = []
    reader = k.spawn(lambda k: got.append(get_mem_cgroup_from_objcg(k, objcg)), cpu=1,
                     name="reader")
    k.chooser = _PauseReader(reader, mb)
    k.run(until=lambda: bool(got))
    assert got == [ma]
    # The first css_tryget saw b at zero and failed; the retry read the parent.
    assert tries == [("/a/b", False), ("/a", True)]
    k.preemptive = False
    k.call(lambda k: css_put(k, ma))
    k.settle()
    assert mb._kstate is KState.FREED
