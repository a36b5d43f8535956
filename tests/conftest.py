"""Shared fixtures: a booted kernel, a bare runtime, and small model objects."""

from __future__ import annotations

import pytest

from memcgsim import Kernel
from memcgsim.kernel.objects import KObject
from memcgsim.kernel.percpu_ref import PercpuRef


class RefObj(KObject):
    """A heap object with an embedded percpu_ref and a release log, for primitive tests."""

    ktype = "struct test_obj"

    def __init__(self) -> None:
        super().__init__()
        self.refcnt = PercpuRef(self, "refcnt")
        self.value = 0
        self.released_by: list[tuple[str, str]] = []


@pytest.fixture
def k() -> Kernel:
    """A booted two-CPU kernel (root cgroup with +memory, init task)."""
    return Kernel(nr_cpus=2, seed=1)


@pytest.fixture
def bare() -> Kernel:
    """The runtime alone: CPUs, RCU kthreads, heap; no cgroups."""
    return Kernel(nr_cpus=2, seed=1, boot=False)
