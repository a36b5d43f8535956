"""Design selection, and overriding one seed operation for one Kernel (how mutants work)."""

from __future__ import annotations

import pytest

from memcgsim import Kernel
from memcgsim.designs import DESIGNS, MemcgPtrDesign, make_design
from memcgsim.mm.memcontrol import MemCgroup


def test_default_design_is_the_seed() -> None:
    k = Kernel(seed=0)
    assert isinstance(k.design, MemcgPtrDesign)
    assert k.design.name == "memcg-ptr" and "memcg-ptr" in DESIGNS


def test_unknown_design_is_rejected_with_the_known_names() -> None:
    with pytest.raises(ValueError, match=r"unknown design 'nope'.*memcg-ptr"):
        make_design("nope")


def test_an_overridden_operation_applies_to_its_kernel_only() -> None:
    calls: list[str] = []

    class Recording(MemcgPtrDesign):
        def memcg_reparent_kmem_memcg_ptr(self, k: Kernel, memcg: MemCgroup,
                                          parent: MemCgroup) -> None:
            calls.append(memcg.cgroup.path if memcg.cgroup else "?")
            super().memcg_reparent_kmem_memcg_ptr(k, memcg, parent)

    k = Kernel(seed=0)
    k.design = Recording()
    other = Kernel(seed=0)
    for kk in (k, other):
        kk.mkdir("/x")
        kk.rmdir("/x")
        kk.settle()
    assert calls == ["/x"]
