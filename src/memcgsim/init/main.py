"""start_kernel(): bring up RCU, workqueues, the memory controller and the cgroup root."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from memcgsim.cgroup.cgroup import cgroup_init
from memcgsim.designs import make_design
from memcgsim.mm.memcontrol import check_memcg_conservation, check_memcg_refs, mem_cgroup_init
from memcgsim.mm.slab import DesignAccounting
from memcgsim.mm.slab_common import kmem_cache_init
from memcgsim.mm.vmscan import vmscan_init

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel

__all__ = ["quiescent_checkers", "start_kernel"]


def quiescent_checkers(k: Kernel) -> list[Callable[[Kernel], None]]:
    """Every consistency check of a quiescent kernel: memcontrol's and the design's."""
    return [check_memcg_refs, check_memcg_conservation, *k.design.checks()]


def start_kernel(k: Kernel) -> None:
    """Boot ``k``: memcg, the default cgroup hierarchy with ``+memory``, init."""
    k.design = make_design(k.config.design)
    memory = mem_cgroup_init(k)
    kmem_cache_init(k)
    k.design.attach(k)
    k.heap.account = DesignAccounting()
    vmscan_init(k)
    subsystems = [memory]
    k.call(lambda k: cgroup_init(k, subsystems, k.config.root_subtree_control),
           name="swapper/0")
    if k.config.check_at_quiescence:
        k.quiescent_checks.extend(quiescent_checkers(k))
    k.init_task = k.new_task("init", cpu=0, persistent=True)
    k.trace("boot", f"cpus={k.nr_cpus}", f"seed={k.seed}")
