"""A kernel with user space on it, and the reference kernel's observed files."""

from __future__ import annotations

from pathlib import Path

import pytest

from memcgsim import Kernel
from memcgsim.userspace import Userspace

LINUX_6_1 = Path(__file__).resolve().parent.parent / "data" / "linux-6.1"


@pytest.fixture
def us() -> Userspace:
    return Userspace(Kernel(nr_cpus=2, seed=1))


@pytest.fixture
def fa_fb(us: Userspace) -> Userspace:
    """The reference's setup: ``fa`` with +memory in its subtree_control, its empty child."""
    us.fs.mkdir("fa")
    us.fs.write("fa/cgroup.subtree_control", "+memory\n")
    us.fs.mkdir("fa/fb")
    return us
