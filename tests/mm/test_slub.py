"""SLUB over array-backed slab pages: geometry, partial-first allocation, empty slab release,
KASAN-style reports, and the bulk path leaving exactly the per-object path's state."""

from __future__ import annotations

import numpy as np
import pytest

from memcgsim import Kernel, KernelViolation, ViolationKind
from memcgsim.kernel.heap import GFP_KERNEL
from memcgsim.mm.slab_common import (
    CACHE_SPECS,
    PageState,
    calculate_order,
    kmalloc_index,
    kmem_cache_by_name,
)
from memcgsim.mm.slub import (
    kmem_cache_alloc,
    kmem_cache_alloc_bulk,
    kmem_cache_free,
    kmem_cache_free_bulk,
    kmem_cache_shrink,
)


def _call(k: Kernel, fn, *args):  # type: ignore[no-untyped-def]
    return k.call(lambda k: fn(k, *args))


def test_geometry_follows_slub_calculate_order() -> None:
    # dentry: 192-byte objects in order-0 slabs of 21 (as slabinfo shows on small machines)
    assert calculate_order(192, 2, 4096) == 0
    k = Kernel(nr_cpus=2, seed=0)
    d = kmem_cache_by_name(k, "dentry")
    assert (d.size, d.order, d.objects) == (192, 0, 21)
    t = kmem_cache_by_name(k, "task_struct")
    assert t.order == 3 and t.objects == (4096 << 3) // t.size
    assert 5 <= d.min_partial <= 10
    # more CPUs ask for more objects per slab
    assert calculate_order(1080, 64, 4096) >= calculate_order(1080, 2, 4096)


def test_kmalloc_index_picks_the_smallest_fitting_cache() -> None:
    assert kmalloc_index(1) == "kmalloc-8"
    assert kmalloc_index(65) == "kmalloc-96"
    assert kmalloc_index(4096) == "kmalloc-4k"
    with pytest.raises(ValueError):
        kmalloc_index(8193)
    assert all(kmalloc_index(n) in CACHE_SPECS for n in (8, 100, 1000, 8000))


def test_unknown_cache_names_the_known_ones() -> None:
    k = Kernel(nr_cpus=1, seed=0)
    with pytest.raises(KeyError, match=r"unknown cache 'nope'.*dentry"):
        kmem_cache_by_name(k, "nope")


def test_objects_fill_a_slab_in_order_then_a_new_slab() -> None:
    k = Kernel(nr_cpus=1, seed=0)
    s = kmem_cache_by_name(k, "dentry")
    objs = _call(k, lambda k: [kmem_cache_alloc(k, s, GFP_KERNEL) for _ in range(22)])
    assert objs[:21] == list(range(21))  # page 0, slot order
    assert objs[21] // s.objects == 1  # the 22nd comes from a second page
    assert s.nr_slabs == 2 and s.nr_full == 1


def test_allocation_comes_from_partial_slabs_first() -> None:
    k = Kernel(nr_cpus=1, seed=0)
    s = kmem_cache_by_name(k, "dentry")
    objs = _call(k, lambda k: [kmem_cache_alloc(k, s, GFP_KERNEL) for _ in range(3 * 21)])
    # Free one object of the first (full) page: it goes on the partial list.
    _call(k, kmem_cache_free, s, objs[5])
    assert s.arena.page_state[0] == PageState.PARTIAL and s.nr_partial == 1
    # Exhaust the CPU slab (page 2 is full already): the next object is the freed one.
    nxt = _call(k, kmem_cache_alloc, s, GFP_KERNEL)
    assert nxt == objs[5]
    assert s.nr_slabs == 3  # no new slab was needed


def test_empty_slabs_are_kept_up_to_min_partial_then_released() -> None:
    k = Kernel(nr_cpus=1, seed=0)
    s = kmem_cache_by_name(k, "dentry")
    n_pages = s.min_partial + 4
    objs = _call(k, lambda k: [kmem_cache_alloc(k, s, GFP_KERNEL)
                               for _ in range(n_pages * s.objects)])
    # Free everything but the last (CPU) slab's objects.
    _call(k, lambda k: [kmem_cache_free(k, s, o) for o in objs[: (n_pages - 1) * s.objects]])
    # A slab that empties is given back once the node has min_partial partial slabs counting
    # itself (__slab_free: "!new.inuse && n->nr_partial >= s->min_partial"): min_partial - 1
    # empty slabs stay for reuse.
    assert s.nr_partial == s.min_partial - 1
    assert s.nr_slabs == s.min_partial
    assert k.slab.nr_pages_freed == n_pages - s.min_partial
    # kmem_cache_shrink() gives back every empty slab, and the CPU slab when empty.
    _call(k, lambda k: [kmem_cache_free(k, s, o) for o in objs[(n_pages - 1) * s.objects:]])
    _call(k, kmem_cache_shrink, s)
    assert s.nr_slabs == 0 and k.slab.pages_now == 0


def test_double_free_is_reported() -> None:
    k = Kernel(nr_cpus=1, seed=0)
    s = kmem_cache_by_name(k, "kmalloc-64")
    o = _call(k, kmem_cache_alloc, s, GFP_KERNEL)
    _call(k, kmem_cache_free, s, o)
    with pytest.raises(KernelViolation) as e:
        _call(k, kmem_cache_free, s, o)
    assert e.value.violation.kind is ViolationKind.DOUBLE_FREE


def test_free_of_an_object_on_no_slab_page_is_reported() -> None:
    k = Kernel(nr_cpus=1, seed=0)
    s = kmem_cache_by_name(k, "kmalloc-64")
    _call(k, kmem_cache_alloc, s, GFP_KERNEL)
    with pytest.raises(KernelViolation) as e:
        _call(k, kmem_cache_free, s, 3 * s.objects)  # a page that was never a slab
    assert e.value.violation.kind is ViolationKind.INVALID_FREE


def test_page_allocation_failure_fails_the_allocation() -> None:
    k = Kernel(nr_cpus=1, seed=0)
    s = kmem_cache_by_name(k, "kmalloc-64")
    k.faults.add("slab", "allocate_slab")
    assert _call(k, kmem_cache_alloc, s, GFP_KERNEL) == -1
    assert not len(_call(k, kmem_cache_alloc_bulk, s, GFP_KERNEL, 10))


def _state(k: Kernel, name: str) -> tuple[object, ...]:
    s = kmem_cache_by_name(k, name)
    a = s.arena
    used = a.page_state != 0
    stacks = [a.stack[p * s.objects: p * s.objects + a.page_nfree[p]].tolist()
              for p in np.flatnonzero(used)]
    return (a.page_state.tolist(), a.page_inuse.tolist(), a.owner.tolist(), stacks,
            list(s.partial), s.nr_partial, s.nr_full, s.nr_slabs, list(s.cpu_slab),
            k.slab.pages_now, k.slab.pages_peak)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bulk_alloc_and_free_leave_the_per_object_state(seed: int) -> None:
    rng = np.random.default_rng(seed)
    plan = []
    live: list[int] = []
    for _ in range(40):
        if live and rng.random() < 0.45:
            take = rng.permutation(len(live))[: int(rng.integers(1, len(live) + 1))]
            plan.append(("free", sorted(int(i) for i in take)))
            live = [x for i, x in enumerate(live) if i not in set(take.tolist())]
        else:
            n = int(rng.integers(1, 60))
            plan.append(("alloc", n))
            live.extend([0] * n)

    def play(bulk: bool) -> tuple[object, ...]:
        k = Kernel(nr_cpus=2, seed=0)
        s = kmem_cache_by_name(k, "dentry")
        held: list[int] = []

        def run(k: Kernel) -> None:
            for op, arg in plan:
                if op == "alloc":
                    assert isinstance(arg, int)
                    if bulk:
                        held.extend(kmem_cache_alloc_bulk(k, s, GFP_KERNEL, arg).tolist())
                    else:
                        held.extend(kmem_cache_alloc(k, s, GFP_KERNEL) for _ in range(arg))
                else:
                    assert isinstance(arg, list)
                    objs = [held[i] for i in arg]
                    for i in sorted(arg, reverse=True):
                        held.pop(i)
                    if bulk:
                        kmem_cache_free_bulk(k, s, np.asarray(objs, dtype=np.int64))
                    else:
                        for o in objs:
                            kmem_cache_free(k, s, o)

        k.call(run, cpu=seed % 2)
        return (*_state(k, "dentry"), tuple(held))

    assert play(True) == play(False)
