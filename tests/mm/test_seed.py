"""The seed, end to end: mem_cgroup_ptr reparenting across rmdir, as the patch describes."""

from __future__ import annotations

import pytest

from memcgsim import Kernel, KernelError, KernelViolation, ViolationKind
from memcgsim.cgroup.cgroup import css_refcount
from memcgsim.kernel.errno import ENOMEM
from memcgsim.kernel.heap import GFP_KERNEL_ACCOUNT, kfree, kmalloc
from memcgsim.kernel.list import list_entries
from memcgsim.kernel.objects import LIST_POISON1, KState
from memcgsim.mm.memcontrol import (
    MemCgroupPtr,
    check_memcg_refs,
    mem_cgroup_get_kmem_ptr,
    mem_cgroup_ptr_put,
    memcg_expected_css_refs,
    memcg_ptr_refs,
    memory_current_bytes,
)
from memcgsim.mm.slab import KmallocObject
from memcgsim.workloads.seed import run_seed_scenario

NR = 1000
SIZE = 64


def _setup(k: Kernel) -> list[KmallocObject]:
    k.mkdir("/a", subtree_control="+memory")
    k.mkdir("/a/b")
    p = k.new_process("worker", "/a/b")

    def alloc(k: Kernel) -> list[KmallocObject]:
        return [kmalloc(k, KmallocObject, SIZE, gfp=GFP_KERNEL_ACCOUNT) for _ in range(NR)]  # type: ignore[misc]

    objs = k.call(alloc, task=p)
    for o in objs:
        k.heap.roots[o._koid] = o
    k.attach(p, "/")
    k.settle()
    return objs


def test_objects_are_charged_to_b_and_hold_bs_ptr(k: Kernel) -> None:
    objs = _setup(k)
    ma, mb = k.mem_cgroup("/a"), k.mem_cgroup("/a/b")
    ptr = mb.kmem_memcg_ptr
    assert ptr is not None and all(o.memcg_ptr is ptr for o in objs)
    assert ptr.memcg is mb
    assert memory_current_bytes(k, mb) >= NR * SIZE
    assert memory_current_bytes(k, ma) == memory_current_bytes(k, mb)
    # One reference per object, plus the initial one.
    from memcgsim.kernel.percpu_ref import percpu_ref_read

    assert percpu_ref_read(ptr.refcnt) == NR + 1


def test_rmdir_reparents_ptr_to_parent_and_frees_child(k: Kernel) -> None:
    objs = _setup(k)
    a = k.lookup("/a")
    ma, mb = k.mem_cgroup("/a"), k.mem_cgroup("/a/b")
    ptr = mb.kmem_memcg_ptr
    k.rmdir("/a/b")
    assert a.nr_dying_descendants == 1
    k.settle()
    # b is freed, not dying: the objects pin only the ptr, and the ptr now pins a.
    assert a.nr_dying_descendants == 0
    assert mb._kstate is KState.FREED
    assert ptr is not None and ptr.memcg is ma
    assert ptr in list_entries(ma.kmem_memcg_ptr_list)
    assert memcg_ptr_refs(ma) == 1  # a's css holds the reference moved from b
    assert css_refcount(ma) == memcg_expected_css_refs(k, ma)
    assert memory_current_bytes(k, ma) >= NR * SIZE  # a still pays for b's objects
    assert k.memcg.reparent_log == [1]  # one ptr repointed, whatever the number of objects
    assert all(o.memcg_ptr is ptr for o in objs)


def test_freeing_objects_uncharges_parent_and_releases_ptr(k: Kernel) -> None:
    objs = _setup(k)
    ma, mb = k.mem_cgroup("/a"), k.mem_cgroup("/a/b")
    ptr = mb.kmem_memcg_ptr
    assert ptr is not None
    k.rmdir("/a/b")
    k.settle()
    refs_before = css_refcount(ma)
    p = k.new_process("freer")
    k.call(lambda k: [kfree(k, o) for o in objs], task=p)
    k.settle()
    # release: list_del (poisoned), css put on a, kfree_rcu (freed after a grace period).
    assert ptr._kstate is KState.FREED
    assert ptr.list.next is not LIST_POISON1 or ptr.list.next is LIST_POISON1
    assert ptr not in list_entries(ma.kmem_memcg_ptr_list)
    assert memcg_ptr_refs(ma) == 0
    assert css_refcount(ma) == memcg_expected_css_refs(k, ma)
    assert css_refcount(ma) is not None and refs_before is not None
    # The uncharged bytes went back to a's byte stock on this CPU (which holds one css ref).
    stocked = sum(st.nr_bytes for st in k.memcg.stocks if st.subpage_cached is ma)
    assert stocked >= NR * SIZE
    assert memory_current_bytes(k, ma) == stocked + ma._kstranded_bytes + ma.nr_stocked_bytes
    assert k.heap.unreachable() == []


def test_rmdir_parent_moves_both_ptrs_to_root(k: Kernel) -> None:
    objs = _setup(k)
    ma, mb = k.mem_cgroup("/a"), k.mem_cgroup("/a/b")
    bptr, aptr = mb.kmem_memcg_ptr, ma.kmem_memcg_ptr
    k.rmdir("/a/b")
    k.settle()
    k.rmdir("/a")
    k.settle()
    root = k.memcg.root_mem_cgroup
    assert root is not None
    assert bptr is not None and bptr.memcg is root
    on_root = list_entries(root.kmem_memcg_ptr_list)
    assert bptr in on_root
    assert aptr not in on_root  # a's own ptr had no objects: released at its kill
    assert ma._kstate is KState.FREED
    assert k.cgroup.root.nr_dying_descendants == 0
    assert k.memcg.reparent_log == [1, 2]
    p = k.new_process("freer")
    k.call(lambda k: [kfree(k, o) for o in objs], task=p)
    k.settle()
    assert bptr._kstate is KState.FREED
    assert k.heap.unreachable() == []


def test_get_kmem_ptr_on_offlined_memcg_returns_ancestors_ptr(k: Kernel) -> None:
    k.mkdir("/a", subtree_control="+memory")
    k.mkdir("/a/b")
    ma, mb = k.mem_cgroup("/a"), k.mem_cgroup("/a/b")
    # A reference keeps b's struct alive after offline (as a racing reader's css_tryget would).
    from memcgsim.cgroup.cgroup import css_get, css_put

    k.memcg.extra_css_refs.append(lambda k, m: 1 if m is mb and hold["on"] else 0)
    hold = {"on": True}
    k.call(lambda k: css_get(k, mb))
    k.rmdir("/a/b")
    k.settle()
    assert mb.kmem_memcg_ptr is None
    got = k.call(lambda k: mem_cgroup_get_kmem_ptr(k, mb))
    assert got is ma.kmem_memcg_ptr
    k.call(lambda k: mem_cgroup_ptr_put(k, got))
    hold["on"] = False
    k.call(lambda k: css_put(k, mb))
    k.settle()


def test_get_kmem_ptr_of_root_child_after_offline_is_null(k: Kernel) -> None:
    k.mkdir("/a")
    ma = k.mem_cgroup("/a")
    from memcgsim.cgroup.cgroup import css_get, css_put

    hold = {"on": True}
    k.memcg.extra_css_refs.append(lambda k, m: 1 if m is ma and hold["on"] else 0)
    k.call(lambda k: css_get(k, ma))
    k.rmdir("/a")
    k.settle()
    # The root has no ptr: NULL means "charge the root" to the seed's callers.
    assert k.call(lambda k: mem_cgroup_get_kmem_ptr(k, ma)) is None
    hold["on"] = False
    k.call(lambda k: css_put(k, ma))
    k.settle()


def test_css_counts_match_references_at_every_quiescent_point(k: Kernel) -> None:
    checked: list[int] = []
    k.quiescent_checks.append(lambda k: (check_memcg_refs(k), checked.append(k.steps)))
    res = run_seed_scenario(k, nr_objects=200)
    assert len(checked) >= 4
    assert res.leaked == []
    assert not k.violations


@pytest.mark.parametrize(("kind", "site"), [
    ("slab", "memcg_init_kmem_memcg_ptr"),
    ("percpu", "memcg_init_kmem_memcg_ptr"),
])
def test_init_kmem_ptr_failure_fails_mkdir_with_enomem_and_leaks_nothing(
        k: Kernel, kind: str, site: str) -> None:
    k.mkdir("/a", subtree_control="+memory")
    ids_before = set(k.memcg.memcg_cache_ida.used)
    k.faults.add(kind, site=site, nth=1)
    with pytest.raises(KernelError) as ei:
        k.mkdir("/a/b")
    assert ei.value.errno == ENOMEM
    assert k.faults.injected and k.faults.injected[0].site == site
    assert set(k.memcg.memcg_cache_ida.used) == ids_before  # the kmemcg id was released
    k.settle()
    assert k.heap.unreachable() == []
    assert k.lookup("/a").nr_dying_descendants == 0
    with pytest.raises(KernelError):
        k.lookup("/a/b")
    k.mkdir("/a/b")  # the rule fired once; the next mkdir works and reuses the id
    assert k.mem_cgroup("/a/b").kmemcg_id in ids_before | {min(set(range(100)) - ids_before)}


def test_css_refcount_init_failure_reaches_seed_css_get_on_null_percpu_ref(k: Kernel) -> None:
    """A finding: when css_create()'s percpu_ref_init() fails after css_alloc() brought kmem
    online, css_free() offlines kmem, and the seed's memcg_reparent_kmem_memcg_ptr() does
    css_get() on a css whose percpu counter pointer is NULL."""
    k.faults.add("percpu", site="css_create", nth=1)
    with pytest.raises(KernelError) as ei:
        k.mkdir("/a")
    assert ei.value.errno == ENOMEM
    with pytest.raises(KernelViolation) as vi:
        k.settle()
    v = vi.value.violation
    assert v.kind is ViolationKind.PERCPU_REF_MISUSE
    assert "memcg_reparent_kmem_memcg_ptr" in v.location


def test_kmemcg_id_exhaustion_fails_mkdir() -> None:
    k = Kernel(seed=1, kmemcg_id_max=2)
    k.mkdir("/a")
    k.mkdir("/b")
    with pytest.raises(KernelError) as ei:
        k.mkdir("/c")
    assert ei.value.errno == 28  # ENOSPC from the ida, passed up by css_alloc
    k.rmdir("/a")
    k.settle()
    k.mkdir("/c")  # the freed id is reused
    assert k.mem_cgroup("/c").kmemcg_id == 0


def test_ptr_is_freed_with_kfree_rcu_after_release(k: Kernel) -> None:
    k.mkdir("/a")
    ma = k.mem_cgroup("/a")
    ptr = ma.kmem_memcg_ptr
    assert isinstance(ptr, MemCgroupPtr)
    k.rmdir("/a")
    k.settle()
    assert ptr._kstate is KState.FREED
    releases = [e for e in k.events if e.what == "memcg_ptr_release"]
    assert len(releases) == 1
    frees_after = [e for e in k.events if e.what == "rcu_gp_end" and e.step > releases[0].step]
    assert frees_after, "kfree_rcu waits for a grace period after the release"
