"""What the files do: processes move, allocations charge the allocating process's memcg,
limits and events behave as mm/memcontrol.c makes them."""

from __future__ import annotations

import pytest

from memcgsim import Kernel, KernelError
from memcgsim.cgroupfs.files import MAX_RECLAIM_RETRIES
from memcgsim.kernel.errno import ENOMEM
from memcgsim.mm.memcontrol import MemCgroup
from memcgsim.userspace import Userspace


def _events(us: Userspace, path: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in us.fs.read(path).splitlines())}


def test_cgroup_procs_lists_the_pids_of_the_cgroup_only(fa_fb: Userspace) -> None:
    us = fa_fb
    p = us.spawn("p", "fa/fb")
    q = us.spawn("q", "fa/fb")
    assert us.fs.read("fa/fb/cgroup.procs") == f"{p.pid}\n{q.pid}\n"
    assert us.fs.read("fa/cgroup.procs") == ""
    assert str(p.pid) not in us.fs.read("cgroup.procs").split()
    assert str(us.sh.pid) in us.fs.read("cgroup.procs").split()
    us.fs.write("cgroup.procs", f"{p.pid}\n")
    assert us.fs.read("fa/fb/cgroup.procs") == f"{q.pid}\n"


def test_cgroup_events_populated_counts_processes_below(fa_fb: Userspace) -> None:
    us = fa_fb
    p = us.spawn("p", "fa/fb")
    assert us.fs.read("fa/cgroup.events") == "populated 1\nfrozen 0\n"
    assert us.fs.read("fa/fb/cgroup.events") == "populated 1\nfrozen 0\n"
    us.exit(p)
    assert us.fs.read("fa/cgroup.events") == "populated 0\nfrozen 0\n"


def test_cgroup_kill_ends_every_process_in_the_subtree(fa_fb: Userspace) -> None:
    us = fa_fb
    us.fs.mkdir("other")
    p, q, r = us.spawn("p", "fa/fb"), us.spawn("q", "fa/fb"), us.spawn("r", "other")
    us.fs.write("fa/cgroup.kill", "1\n")
    assert p.exited and q.exited and not r.exited
    assert us.fs.read("fa/fb/cgroup.procs") == ""
    us.fs.rmdir("fa/fb")


def test_allocations_charge_the_memcg_of_the_allocating_process(fa_fb: Userspace) -> None:
    us = fa_fb
    us.fs.mkdir("fa/fc")
    p = us.spawn("p", "fa/fb")
    us.alloc(p, "kmalloc-4k", 16)
    assert int(us.fs.read("fa/fb/memory.current")) >= 16 * 4096
    assert us.fs.read("fa/fc/memory.current") == "0\n"
    assert us.fs.read("fa/memory.current") == us.fs.read("fa/fb/memory.current")
    us.fs.write("fa/fc/cgroup.procs", f"{p.pid}\n")  # charges stay where they were made
    before = int(us.fs.read("fa/fb/memory.current"))
    us.alloc(p, "kmalloc-4k", 16)
    assert int(us.fs.read("fa/fc/memory.current")) >= 16 * 4096
    # fb keeps its objects' charges; only its byte stock on this CPU went back (drained
    # when the stock switched to fc).
    assert 16 * 4096 <= int(us.fs.read("fa/fb/memory.current")) <= before


def test_memory_peak_keeps_the_high_watermark(us: Userspace) -> None:
    us.fs.mkdir("a")
    p = us.spawn("p", "a")
    us.alloc(p, "kmalloc-4k", 64, "x")
    peak = int(us.fs.read("a/memory.peak"))
    assert peak >= 64 * 4096
    us.free("x")
    us.settle()
    assert int(us.fs.read("a/memory.current")) < peak
    assert int(us.fs.read("a/memory.peak")) == peak


def test_a_charge_beyond_memory_max_fails_and_counts_max_and_oom(fa_fb: Userspace) -> None:
    us = fa_fb
    us.fs.write("fa/memory.max", "64k\n")
    p = us.spawn("p", "fa/fb")
    with pytest.raises(KernelError) as ei:
        us.alloc(p, "kmalloc-4k", 100, "x")
    assert ei.value.errno == ENOMEM
    assert int(us.fs.read("fa/memory.current")) <= 64 * 1024
    ev = _events(us, "fa/memory.events")
    assert ev["max"] >= 1 and ev["oom"] >= 1
    assert _events(us, "fa/fb/memory.events")["max"] == 0  # fb's own limit was not hit
    local = _events(us, "fa/memory.events.local")
    assert local["max"] == ev["max"]


def test_lowering_memory_max_below_usage_succeeds_and_counts_an_oom(fa_fb: Userspace) -> None:
    us = fa_fb
    p = us.spawn("p", "fa/fb")
    us.alloc(p, "kmalloc-4k", 40)
    us.fs.write("fa/fb/memory.max", "4k\n")  # nothing reclaimable: usage stays above
    assert us.fs.read("fa/fb/memory.max") == "4096\n"
    assert int(us.fs.read("fa/fb/memory.current")) > 4096
    assert _events(us, "fa/fb/memory.events")["oom"] == 1
    assert _events(us, "fa/memory.events")["oom"] == 1  # hierarchical
    assert _events(us, "fa/memory.events.local")["oom"] == 0


def test_memory_high_write_sets_the_limit_even_if_usage_stays_above(fa_fb: Userspace) -> None:
    us = fa_fb
    p = us.spawn("p", "fa/fb")
    us.alloc(p, "kmalloc-4k", 40)
    us.fs.write("fa/fb/memory.high", "8k\n")
    assert us.fs.read("fa/fb/memory.high") == "8192\n"
    assert int(us.fs.read("fa/fb/memory.current")) > 8192


def test_memory_max_write_reclaims_negative_dentries_down_to_the_limit(
        fa_fb: Userspace) -> None:
    us = fa_fb
    p = us.spawn("p", "fa/fb")
    us.stat_missing(p, 2000)  # 2000 unused negative dentries on fb's list_lru
    assert int(us.fs.read("fa/fb/memory.current")) > 64 * 1024
    us.fs.write("fa/fb/memory.max", "64k\n")
    assert int(us.fs.read("fa/fb/memory.current")) <= 64 * 1024
    assert _events(us, "fa/fb/memory.events")["oom"] == 0


def test_memory_max_write_gives_up_with_an_oom_event_after_the_retries(
        fa_fb: Userspace) -> None:
    """Objects in use cannot be reclaimed: MAX_RECLAIM_RETRIES passes that reclaim nothing,
    then an oom event (no OOM killer in the model), and the write still succeeds."""
    us = fa_fb
    p = us.spawn("p", "fa/fb")
    us.alloc(p, "kmalloc-4k", 40)
    calls: list[int] = []

    def reclaim(k: Kernel, memcg: MemCgroup, nr_pages: int, gfp: int) -> int:
        calls.append(nr_pages)
        return 0

    us.k.memcg.reclaim = reclaim
    us.fs.write("fa/fb/memory.max", "1m\n")
    assert calls == []  # usage already fits
    us.fs.write("fa/fb/memory.max", "8k\n")
    assert us.fs.read("fa/fb/memory.max") == "8192\n"
    assert len(calls) == MAX_RECLAIM_RETRIES
    # The stock drain comes first: then usage is the 40 objects' pages, 38 above the max.
    assert calls[0] == 40 - 2
    assert int(us.fs.read("fa/fb/memory.current")) > 8192
    assert _events(us, "fa/fb/memory.events")["oom"] == 1
    assert _events(us, "fa/memory.events")["oom"] == 1  # hierarchical
    assert _events(us, "fa/memory.events.local")["oom"] == 0


def test_going_over_memory_high_reclaims_on_the_way_back_to_user_mode(
        fa_fb: Userspace) -> None:
    """mem_cgroup_handle_over_high() after the system call that charged past memory.high:
    a ``high`` event and reclaim, here of the caller's own negative dentries."""
    us = fa_fb
    us.fs.write("fa/fb/memory.high", "1m\n")
    p = us.spawn("p", "fa/fb")
    us.stat_missing(p, 1000)  # 192 KB (and a 128 KiB charge batch): under the limit
    assert _events(us, "fa/fb/memory.events")["high"] == 0
    us.stat_missing(p, 20000, tgid=1)  # another 3.8 MB of new names
    ev = _events(us, "fa/fb/memory.events")
    assert ev["high"] >= 1
    assert _events(us, "fa/memory.events")["high"] == ev["high"]  # hierarchical
    assert _events(us, "fa/memory.events.local")["high"] == 0
    assert int(us.fs.read("fa/fb/memory.current")) < 21000 * 192
    assert p.memcg_nr_pages_over_high == 0
