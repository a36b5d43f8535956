"""The ported test_kmem.c under every registered design, against recorded expectations.

EXPECTED holds, for each test and design, the outcome the model gives and why.  A design
registered without an entry fails here, so that each new design's outcomes get recorded.
"""

from __future__ import annotations

import pytest

from memcgsim import Kernel
from memcgsim.designs import DESIGNS
from memcgsim.selftests.cgroup.test_kmem import TESTS, main, run_test
from memcgsim.userspace import Userspace

_DOUBLE_FLUSH = (
    "fail", "5.3 flushes a memcg's per-cpu slab statistics at kmem offline and again when it "
            "is freed, without zeroing them (fixed in 5.4 by \"mm: memcg/slab: fix percpu slab "
            "vmstats flushing\"): the parent's kernel counts the removed children's slab twice",
    "anon + file + kernel + sock = ")
_NO_PERCPU = ("fail", "kernels before 5.9 do not account per-cpu memory: a new memcg's "
                      "statistics are charged to nobody, so percpu and memory.current stay 0",
              "percpu 0")

#: test -> design -> (outcome, why, a line the test prints that shows it ("" for none))
EXPECTED: dict[str, dict[str, tuple[str, str, str]]] = {
    "test_kmem_basic": {
        d: ("pass", "writing memory.high reclaims the unused negative dentries through the "
                    "superblock shrinker; they are freed a grace period later, within the "
                    "test's 1 s sleep", "")
        for d in ("memcg-ptr", "objcg", "page-pinning", "cache-reparent", "walk")
    },
    "test_kmem_memcg_deletion": {
        "memcg-ptr": _DOUBLE_FLUSH,
        "walk": _DOUBLE_FLUSH,
        "cache-reparent": _DOUBLE_FLUSH,
        "objcg": ("pass", "5.4+ flushes the per-cpu statistics once, at free: kernel matches "
                          "memory.current within MAX_VMSTAT_ERROR", ""),
        "page-pinning": ("pass", "the removed children stay dying, their slab pages still "
                                 "charged and counted, never flushed twice: kernel matches "
                                 "memory.current within MAX_VMSTAT_ERROR", ""),
    },
    "test_kmem_dead_cgroups": {
        "memcg-ptr": ("pass", "offline repoints each child's mem_cgroup_ptr to the parent; "
                              "the dentries pin the ptr, not the child", ""),
        "objcg": ("pass", "offline repoints each child's obj_cgroup to the parent", ""),
        "walk": ("pass", "offline repoints every dentry to the parent", ""),
        "cache-reparent": ("pass", "offline reparents the child's cache copies, which hold "
                                   "their pages' css references: the child is released", ""),
        "page-pinning": ("fail", "every slab page of a child's dentry cache copy pins the "
                                 "child's css while a negative dentry on it lives",
                         "nr_dying_descendants 30"),
    },
    "test_percpu_basic": {
        "objcg": ("pass", "5.9 charges each new memcg's per-cpu statistics to its parent "
                          "(percpu), and memory.current matches percpu + slab", ""),
        "memcg-ptr": _NO_PERCPU,
        "walk": _NO_PERCPU,
        "cache-reparent": _NO_PERCPU,
        "page-pinning": _NO_PERCPU,
    },
}


@pytest.mark.parametrize("design", sorted(DESIGNS))
@pytest.mark.parametrize("test", list(TESTS))
def test_kmem_selftest_outcome_per_design(test: str, design: str) -> None:
    assert design in EXPECTED[test], f"record the expected outcome of {test} under {design}"
    outcome, why, shows = EXPECTED[test][design]
    res = run_test(Userspace(Kernel(nr_cpus=2, seed=0, design=design)), test)
    printed = "".join(res.output)
    assert res.outcome == outcome, f"{why}; output: {printed}{res.skip_reason}"
    assert shows in printed, why


def test_main_prints_tap_as_kselftest_does() -> None:
    lines: list[str] = []
    status = main(lambda: Userspace(Kernel(nr_cpus=2, seed=0)),
                  ["test_kmem_dead_cgroups", "test_percpu_basic"], lines.append)
    assert lines[:2] == ["TAP version 13", "1..2"]
    outcomes = [line for line in lines if line.startswith(("ok ", "not ok "))]
    expect = {"pass": "ok {i} {name}", "fail": "not ok {i} {name}", "skip": "ok {i} # SKIP {name}"}
    for i, name in enumerate(["test_kmem_dead_cgroups", "test_percpu_basic"], 1):
        assert expect[EXPECTED[name]["memcg-ptr"][0]].format(i=i, name=name) in outcomes
    assert lines[-1].startswith("# Totals: pass:")
    failed = any(EXPECTED[n]["memcg-ptr"][0] == "fail"
                 for n in ["test_kmem_dead_cgroups", "test_percpu_basic"])
    assert status == (1 if failed else 0)


def test_kselftest_command_runs_the_port(capsys: pytest.CaptureFixture[str]) -> None:
    from memcgsim.cli import main as cli_main

    with pytest.raises(SystemExit) as ei:
        cli_main(["kselftest", "--design", "objcg", "test_kmem_dead_cgroups"])
    out = capsys.readouterr().out
    assert out.startswith("TAP version 13\n1..1\n")
    assert ei.value.code == (1 if EXPECTED["test_kmem_dead_cgroups"]["objcg"][0] == "fail" else 0)


def _printed_values(lines: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in "".join(lines).splitlines():
        name, _, value = line.rpartition(" ")
        out[name.rstrip(" =")] = int(value)
    return out


def test_memcg_deletion_under_5_3_counts_the_removed_childrens_slab_twice() -> None:
    res = run_test(Userspace(Kernel(nr_cpus=2, seed=0, design="memcg-ptr")),
                   "test_kmem_memcg_deletion")
    v = _printed_values(res.output)
    # 100 children x 100 negative dentries of 192 bytes are charged once...
    assert 100 * 100 * 192 <= v["memory.current"] < 100 * 100 * 192 + 64 * 4096 * 2
    # ...and counted twice, minus what the last, still dying, child has not flushed.
    assert v["kernel"] > 1.8 * 100 * 100 * 192


def test_percpu_basic_under_objcg_charges_each_childs_statistics_to_the_parent() -> None:
    from memcgsim.designs.objcg import memcg_percpu_bytes
    from memcgsim.selftests.cgroup.cgroup_util import CgroupUtil
    from memcgsim.selftests.cgroup.test_kmem import test_percpu_basic

    us = Userspace(Kernel(nr_cpus=2, seed=0, design="objcg"))
    seen: dict[str, int] = {}
    u = CgroupUtil(us)
    read = u.cg_read_key_long

    def spy(cgroup: str, control: str, key: str) -> int:
        val = read(cgroup, control, key)
        seen[key] = val
        return val

    u.cg_read_key_long = spy  # type: ignore[method-assign]
    u.cg_write(u.cg_find_unified_root(), "cgroup.subtree_control", "+memory")
    assert test_percpu_basic(u, u.cg_find_unified_root()) == 0
    per_child = memcg_percpu_bytes(us.k)
    assert per_child == 7008  # the 2-CPU 6.1 kernel of reference/linux-6.1-cgroupfs.md
    assert abs(seen["percpu "] - 1000 * per_child) <= 2 * 32 * 4096


def test_readme_table_shows_the_recorded_outcomes() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent.parent / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `test_")]
    header = next(line for line in readme.splitlines()
                  if line.startswith("| test | `memcg-ptr`"))
    designs = [c.strip(" `") for c in header.strip("|").split("|")[1:]]
    assert sorted(designs) == sorted(DESIGNS)
    assert len(rows) == len(TESTS)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        test = cells[0].strip("`")
        for design, cell in zip(designs, cells[1:], strict=True):
            assert cell.split()[0] == EXPECTED[test][design][0], (test, design)
