"""memcgsim: an executable model of the Linux memory cgroup's kernel-memory accounting.

The model is built around ``struct mem_cgroup_ptr`` from "[PATCH RFC 02/14] mm: memcg:
introduce mem_cgroup_ptr" (Roman Gushchin, 2019).  A :class:`~memcgsim.kernel.kernel.Kernel`
instance holds one run's whole world.
"""

from memcgsim.kernel.errno import KernelError
from memcgsim.kernel.kernel import Kernel, KernelConfig
from memcgsim.kernel.violations import KernelViolation, Violation, ViolationKind

__all__ = [
    "Kernel",
    "KernelConfig",
    "KernelError",
    "KernelViolation",
    "Violation",
    "ViolationKind",
]

__version__ = "0.1.0"
