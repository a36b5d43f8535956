"""Memcg-aware list_lru: per-memcg lists, oldest-first walks, draining into the parent at
offline, and reclaim (memory.max, memory.high, drop_caches) through the shrinker."""

from __future__ import annotations

import numpy as np
import pytest

from memcgsim import Kernel
from memcgsim.kernel.heap import GFP_KERNEL
from memcgsim.mm.list_lru import (
    list_lru_add,
    list_lru_add_bulk,
    list_lru_count,
    list_lru_count_one,
    list_lru_del,
    list_lru_walk_one,
)
from memcgsim.mm.memcontrol import memory_current_bytes
from memcgsim.mm.slab_common import kmem_cache_by_name
from memcgsim.mm.slub import kmem_cache_alloc, kmem_cache_alloc_bulk
from memcgsim.mm.vmscan import drop_caches, memcg_set_high, memcg_set_max

DESIGNS = ["page-pinning", "cache-reparent", "walk", "memcg-ptr", "objcg"]


def _cached_dentries(k: Kernel, path: str, n: int) -> list[int]:
    """A process in ``path`` stats ``n`` missing names: n negative dentries, unused, cached."""
    p = k.new_process(f"stat@{path}", path)
    s = kmem_cache_by_name(k, "dentry")
    assert s.list_lru is not None
    lru = s.list_lru

    def body(k: Kernel) -> list[int]:
        out = []
        for _ in range(n):
            idx = kmem_cache_alloc(k, s, GFP_KERNEL)
            list_lru_add(k, lru, idx)
            out.append(idx)
        return out

    objs = k.call(body, task=p)
    k.attach(p, "/")
    return objs


@pytest.mark.parametrize("design", DESIGNS)
def test_objects_go_on_their_memcgs_list(design: str) -> None:
    k = Kernel(nr_cpus=2, seed=0, design=design)
    k.mkdir("/a")
    k.mkdir("/b")
    _cached_dentries(k, "/a", 30)
    _cached_dentries(k, "/b", 20)
    lru = kmem_cache_by_name(k, "dentry").list_lru
    assert lru is not None
    assert list_lru_count_one(lru, k.mem_cgroup("/a")) == 30
    assert list_lru_count_one(lru, k.mem_cgroup("/b")) == 20
    assert list_lru_count(lru) == 50


def test_walk_isolates_oldest_first_and_del_unlinks() -> None:
    k = Kernel(nr_cpus=1, seed=0)
    k.mkdir("/a")
    objs = _cached_dentries(k, "/a", 10)
    lru = kmem_cache_by_name(k, "dentry").list_lru
    assert lru is not None
    m = k.mem_cgroup("/a")
    assert k.call(lambda k: list_lru_del(k, lru, objs[1]))
    assert not k.call(lambda k: list_lru_del(k, lru, objs[1]))
    got = k.call(lambda k: list_lru_walk_one(k, lru, m, 3))
    assert got == [objs[0], objs[2], objs[3]]
    assert list_lru_count_one(lru, m) == 6


def test_bulk_add_matches_single_adds() -> None:
    def build(bulk: bool) -> list[int]:
        k = Kernel(nr_cpus=1, seed=0)
        k.mkdir("/a")
        p = k.new_process("p", "/a")
        s = kmem_cache_by_name(k, "dentry")
        lru = s.list_lru
        assert lru is not None

        def body(k: Kernel) -> list[int]:
            objs = kmem_cache_alloc_bulk(k, s, GFP_KERNEL, 25)
            if bulk:
                list_lru_add_bulk(k, lru, objs)
            else:
                for o in objs.tolist():
                    list_lru_add(k, lru, o)
            return list_lru_walk_one(k, lru, k.mem_cgroup("/a"), 100)

        return k.call(body, task=p)

    assert build(True) == build(False)


@pytest.mark.parametrize("design", DESIGNS)
def test_offline_drains_the_list_into_the_parent(design: str) -> None:
    k = Kernel(nr_cpus=2, seed=0, design=design)
    k.mkdir("/a", subtree_control="+memory")
    k.mkdir("/a/b")
    _cached_dentries(k, "/a/b", 40)
    lru = kmem_cache_by_name(k, "dentry").list_lru
    assert lru is not None
    ma = k.mem_cgroup("/a")
    k.rmdir("/a/b")
    k.settle()
    assert list_lru_count_one(lru, ma) == 40
    # rmdir /a too: everything ends on the root's (global) list.
    k.rmdir("/a")
    k.settle()
    assert list_lru_count_one(lru, None) == 40


@pytest.mark.parametrize("design", DESIGNS)
def test_memory_max_reclaims_cached_dentries(design: str) -> None:
    k = Kernel(nr_cpus=2, seed=0, design=design)
    k.mkdir("/a")
    m = k.mem_cgroup("/a")
    k.call(lambda k: memcg_set_max(k, m, 64))  # 256 KiB
    objs = _cached_dentries(k, "/a", 4000)  # 750 KiB of dentries
    k.settle()
    assert len(objs) == 4000  # every allocation succeeded: reclaim made room
    assert k.vmscan.nr_memcg_reclaims > 0 and k.vmscan.nr_reclaimed_objects > 0
    assert memory_current_bytes(k, m) <= 64 * k.page_size
    assert m.memory_events[2] > 0  # MEMCG_MAX


def test_memory_high_reclaims_on_return_to_user() -> None:
    k = Kernel(nr_cpus=2, seed=0, design="objcg")
    k.mkdir("/a")
    m = k.mem_cgroup("/a")
    k.call(lambda k: memcg_set_high(k, m, 64))
    p = k.new_process("p", "/a")
    s = kmem_cache_by_name(k, "dentry")
    lru = s.list_lru
    assert lru is not None

    def body(k: Kernel) -> None:
        objs = kmem_cache_alloc_bulk(k, s, GFP_KERNEL, 4000)
        list_lru_add_bulk(k, lru, objs)
        from memcgsim.mm.vmscan import mem_cgroup_handle_over_high

        assert k.current is not None and k.current.memcg_nr_pages_over_high > 0
        mem_cgroup_handle_over_high(k)

    k.call(body, task=p)
    k.settle()
    assert k.vmscan.nr_reclaimed_objects > 0
    assert memory_current_bytes(k, m) <= 80 * k.page_size
    assert m.memory_events[1] > 0  # MEMCG_HIGH


@pytest.mark.parametrize("design", DESIGNS)
def test_drop_caches_2_frees_every_cached_object(design: str) -> None:
    k = Kernel(nr_cpus=2, seed=0, design=design)
    k.mkdir("/a")
    _cached_dentries(k, "/a", 500)
    s = kmem_cache_by_name(k, "dentry")
    assert s.root.nr_inuse + sum(c.nr_inuse for c in k.slab.caches if c.root is s) >= 500
    freed = k.call(lambda k: drop_caches(k, 2))
    assert freed == 500
    k.settle()  # the frees wait for a grace period
    assert sum(c.nr_inuse for c in k.slab.caches if c.root is s) == 0
    assert k.call(lambda k: drop_caches(k, 1)) == 0
    with pytest.raises(ValueError):
        drop_caches(k, 4)
    assert not np.any(s.arena.owner[: s.arena.nr_pages * s.objects] > 0)


@pytest.mark.parametrize("design", DESIGNS)
def test_stat_missing_leaves_charged_negative_dentries_on_the_lru(design: str) -> None:
    from memcgsim.fs.dcache import stat_missing

    k = Kernel(nr_cpus=2, seed=0, design=design)
    k.mkdir("/a")
    p = k.new_process("p", "/a")
    objs = k.call(stat_missing, 300, task=p)
    lru = kmem_cache_by_name(k, "dentry").list_lru
    assert lru is not None and len(objs) == 300
    assert list_lru_count_one(lru, k.mem_cgroup("/a")) == 300
    assert memory_current_bytes(k, k.mem_cgroup("/a")) >= 300 * 192
