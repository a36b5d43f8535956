"""The files print what Linux 6.1 prints: names, order and layout, compared with the
observed files in tests/data/linux-6.1."""

from __future__ import annotations

import pytest

from memcgsim.mm.memcg_stat import MEMORY_STAT_FIELDS
from memcgsim.userspace import Userspace
from tests.cgroupfs.conftest import LINUX_6_1


@pytest.mark.parametrize("name", [
    "cgroup.stat", "cgroup.events", "cgroup.controllers", "memory.max", "memory.events",
])
def test_files_of_an_idle_cgroup_match_the_reference_exactly(fa_fb: Userspace, name: str) -> None:
    assert fa_fb.fs.read(f"fa/{name}") == (LINUX_6_1 / name).read_text()


def test_an_empty_subtree_control_reads_as_zero_bytes(fa_fb: Userspace) -> None:
    assert fa_fb.fs.read("fa/fb/cgroup.subtree_control") == ""
    assert (LINUX_6_1 / "fb-cgroup.subtree_control").read_text() == ""
    assert fa_fb.fs.read("fa/cgroup.subtree_control") == "memory\n"


def test_memory_stat_has_the_47_fields_of_6_1_in_order(fa_fb: Userspace) -> None:
    ref = [line.split()[0] for line in (LINUX_6_1 / "memory.stat").read_text().splitlines()]
    ours = fa_fb.fs.read("fa/memory.stat")
    assert ours.endswith("\n")
    lines = ours.splitlines()
    assert [line.split(" ")[0] for line in lines] == ref
    assert len(ref) == 47
    assert all(len(line.split(" ")) == 2 and line.split(" ")[1].isdigit() for line in lines)
    assert list(MEMORY_STAT_FIELDS) == ref


def test_memory_stat_values_are_bytes_and_slab_is_the_sum(us: Userspace) -> None:
    us.fs.mkdir("a")
    w = us.spawn("w", "a")
    us.alloc(w, "kmalloc-4k", 100)  # 400 KiB: beyond the per-cpu stat batch
    stat = dict(line.split() for line in us.fs.read("a/memory.stat").splitlines())
    # Per-cpu deltas are folded in once they pass MEMCG_CHARGE_BATCH pages' worth of bytes:
    # three folds of 33 objects, one object still pending on the CPU.
    assert int(stat["slab_unreclaimable"]) == 99 * 4096
    assert int(stat["slab"]) == int(stat["slab_reclaimable"]) + int(stat["slab_unreclaimable"])
    assert int(stat["kernel"]) >= int(stat["slab"])
    assert int(stat["anon"]) == 0


def test_root_has_no_not_on_root_files(us: Userspace) -> None:
    names = us.fs.listdir("/sys/fs/cgroup")
    assert "memory.stat" in names and "cgroup.procs" in names and "cgroup.stat" in names
    for absent in ("memory.current", "memory.max", "cgroup.events", "cgroup.type",
                   "cgroup.kill", "memory.events"):
        assert absent not in names


def test_memory_files_exist_only_where_the_parent_enables_memory(us: Userspace) -> None:
    us.fs.mkdir("a")  # the root enables memory: a has its memcg
    us.fs.mkdir("a/b")  # a's subtree_control is empty
    assert "memory.current" in us.fs.listdir("a")
    assert not any(n.startswith("memory.") for n in us.fs.listdir("a/b"))
    assert us.fs.read("a/b/cgroup.controllers") == ""


def test_tunables_read_max_or_bytes(fa_fb: Userspace) -> None:
    fs = fa_fb.fs
    for f in ("memory.max", "memory.high"):
        assert fs.read(f"fa/{f}") == "max\n"
    for f in ("memory.min", "memory.low"):
        assert fs.read(f"fa/{f}") == "0\n"
    assert fs.read("fa/cgroup.max.descendants") == "max\n"
    assert fs.read("fa/cgroup.type") == "domain\n"
    assert fs.read("fa/memory.oom.group") == "0\n"
    assert fs.read("fa/memory.current") == "0\n"
    assert fs.read("fa/memory.peak") == "0\n"


def test_the_cgroup_cores_file_lists_match_what_cgroupfs_serves() -> None:
    """sys_mkdir()/sys_rmdir() of the cgroup core know file names for EEXIST/ENOTDIR."""
    from memcgsim.cgroup.cgroup import CGROUP_CORE_FILES
    from memcgsim.cgroupfs.files import cgroup_base_files, memory_files
    from memcgsim.mm.memcontrol import MemoryCgrpSubsys

    assert set(CGROUP_CORE_FILES) == {c.file_name for c in cgroup_base_files}
    assert set(MemoryCgrpSubsys.files) == {c.file_name for c in memory_files}
