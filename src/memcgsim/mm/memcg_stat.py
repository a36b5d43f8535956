"""memory.stat (mm/memcontrol.c memory_stat_format()): the kernel's fields, in its order.

Values come from the hierarchical atomic counters (``memcg_page_state``), which per-cpu
deltas reach only in batches of MEMCG_CHARGE_BATCH pages (``__mod_memcg_state``) or when a
memcg's per-cpu statistics are flushed (at kmem offline in 5.3, at free): a reader sees what
the kernel's reader sees, lag included.  Field names and order are those of a 6.1 kernel
(``reference/linux-6.1-cgroupfs.md``); fields the model does not track read 0.

Which memory each design counts as "slab" follows its era: whole slab pages for the page
designs (5.3 and earlier counted slab pages), object bytes for the byte designs (RFC 04/14
"convert slab vmstat counter to bytes", 5.9).  "percpu" is counted where the design accounts
per-cpu memory (5.9+, the objcg design).  "kernel" is the sum of the kernel memory items the
model tracks (6.1 counts every kmem charge in whole pages, MEMCG_KMEM).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memcgsim.mm.memcontrol import MemcgStat, memcg_page_state

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.mm.memcontrol import MemCgroup

__all__ = ["MEMORY_STAT_FIELDS", "memory_stat", "memory_stat_format"]

#: memory.stat of 6.1, every field in order
MEMORY_STAT_FIELDS = (
    "anon", "file", "kernel", "kernel_stack", "pagetables", "sec_pagetables", "percpu",
    "sock", "vmalloc", "shmem", "file_mapped", "file_dirty", "file_writeback", "swapcached",
    "anon_thp", "file_thp", "shmem_thp", "inactive_anon", "active_anon", "inactive_file",
    "active_file", "unevictable", "slab_reclaimable", "slab_unreclaimable", "slab",
    "workingset_refault_anon", "workingset_refault_file", "workingset_activate_anon",
    "workingset_activate_file", "workingset_restore_anon", "workingset_restore_file",
    "workingset_nodereclaim", "pgscan", "pgsteal", "pgscan_kswapd", "pgscan_direct",
    "pgsteal_kswapd", "pgsteal_direct", "pgfault", "pgmajfault", "pgrefill", "pgactivate",
    "pgdeactivate", "pglazyfree", "pglazyfreed", "thp_fault_alloc", "thp_collapse_alloc",
)


def memory_stat(k: Kernel, memcg: MemCgroup) -> dict[str, int]:
    """The memory.stat values of ``memcg``, in bytes (events as counts), every field."""
    out = dict.fromkeys(MEMORY_STAT_FIELDS, 0)
    rec = memcg_page_state(memcg, MemcgStat.NR_SLAB_RECLAIMABLE)
    unrec = memcg_page_state(memcg, MemcgStat.NR_SLAB_UNRECLAIMABLE)
    percpu = memcg_page_state(memcg, MemcgStat.MEMCG_PERCPU_B)
    stack = memcg_page_state(memcg, MemcgStat.MEMCG_KERNEL_STACK_KB) * 1024
    other = memcg_page_state(memcg, MemcgStat.MEMCG_KMEM) * k.page_size
    out["slab_reclaimable"] = rec
    out["slab_unreclaimable"] = unrec
    out["slab"] = rec + unrec
    out["percpu"] = percpu
    out["kernel_stack"] = stack
    out["sock"] = memcg_page_state(memcg, MemcgStat.MEMCG_SOCK) * k.page_size
    out["kernel"] = rec + unrec + percpu + stack + other
    return out


def memory_stat_format(k: Kernel, memcg: MemCgroup) -> str:
    """memory.stat as ``cat`` prints it: ``name value`` lines."""
    return "".join(f"{name} {value}\n" for name, value in memory_stat(k, memcg).items())
