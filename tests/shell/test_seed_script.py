"""The seed scenario as a shell script, under every registered design."""

from __future__ import annotations

import pytest

from memcgsim.designs import DESIGNS
from tests.shell.conftest import EXAMPLES, run_script

#: nr_dying_descendants of /a after settle, per design, and why
EXPECTED_DYING_AFTER_SETTLE: dict[str, tuple[int, str]] = {
    "memcg-ptr": (0, "offline repoints b's mem_cgroup_ptr to a; nothing pins b"),
    "objcg": (0, "offline repoints b's obj_cgroup to a; nothing pins b"),
    "page-pinning": (1, "each slab page holds a css reference on b while its objects live"),
    "cache-reparent": (0, "the dying cache copies move to a; b's css is released"),
    "walk": (0, "offline repoints every object to a"),
}


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_seed_script_leaves_b_dying_or_freed_as_the_design_does(design: str) -> None:
    assert design in EXPECTED_DYING_AFTER_SETTLE, f"no expectation recorded for {design}"
    dying, why = EXPECTED_DYING_AFTER_SETTLE[design]
    run = run_script((EXAMPLES / "seed-scenario.sh").read_text(), design=design)
    assert run.status == 0, run.err
    assert run.err == ""
    lines = run.out.splitlines()
    # Right after rmdir: killed, not yet offline.
    assert lines[0:2] == ["nr_descendants 0", "nr_dying_descendants 1"]
    assert lines[2:4] == ["nr_descendants 0", f"nr_dying_descendants {dying}"], why
    # b's 1000 objects of 64 bytes are still charged to a, whatever happened to b.
    assert int(lines[4]) >= 1000 * 64


def test_readme_shows_what_the_seed_script_prints() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    block = readme.split("$ memcgsim shell examples/seed-scenario.sh\n", 1)[1].split("```")[0]
    assert run_script((EXAMPLES / "seed-scenario.sh").read_text()).out == block


def test_the_same_script_and_seed_give_the_same_run() -> None:
    script = (EXAMPLES / "seed-scenario.sh").read_text() + "cat cgroup.procs\nsleep 0.5\n"
    a, b = run_script(script), run_script(script)
    assert a.out == b.out
    assert a.us.k.steps == b.us.k.steps
    assert [str(e) for e in a.us.k.events] == [str(e) for e in b.us.k.events]


#: nr_dying_descendants of /parent one second after rmdir, and after drop_caches, by design
EXPECTED_DENTRIES: dict[str, tuple[int, int, str]] = {
    "memcg-ptr": (0, 0, "the dentries reference the ptr, which offline moved to the parent"),
    "objcg": (0, 0, "the dentries reference the objcg, which offline moved to the parent"),
    "walk": (0, 0, "offline repointed each dentry to the parent"),
    "cache-reparent": (0, 0, "the child's dentry cache copy moved to the parent"),
    "page-pinning": (1, 0, "the dentries' slab pages pin the child until reclaim frees them"),
}


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_negative_dentries_script_per_design(design: str) -> None:
    assert design in EXPECTED_DENTRIES, f"no expectation recorded for {design}"
    before, after, why = EXPECTED_DENTRIES[design]
    run = run_script((EXAMPLES / "negative-dentries.sh").read_text(), design=design)
    assert run.status == 0, run.err
    lines = run.out.splitlines()
    assert lines[1] == f"nr_dying_descendants {before}", why
    assert int(lines[2]) >= 1000 * 192  # the child's dentries, charged to the parent now
    assert lines[4] == f"nr_dying_descendants {after}", why
