"""Negative dentries (fs/dcache.c, fs/namei.c): what stat(2) of a missing name leaves behind.

A lookup of a name that does not exist allocates a dentry from ``dentry_cache`` (which has
SLAB_ACCOUNT: it is charged to the caller's memcg), hashes it as negative, and the final
dput() leaves it unused on the superblock's LRU: cached, reclaimable, and outliving the
cgroup of the task that looked it up.  This is the selftests' ``alloc_dcache()``.

Model simplifications: names fit in the dentry (no external-name kmalloc), no hash table;
each dentry is one object of the ``dentry`` cache put on its list_lru.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from memcgsim.kernel.heap import GFP_KERNEL
from memcgsim.mm.list_lru import list_lru_add, list_lru_add_bulk
from memcgsim.mm.slab_common import kmem_cache_by_name
from memcgsim.mm.slub import kmem_cache_alloc, kmem_cache_alloc_bulk

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from memcgsim.kernel.kernel import Kernel

__all__ = ["stat_missing"]


def stat_missing(k: Kernel, count: int, *, bulk: bool = False) -> NDArray[np.int64]:
    """``count`` stat(2) calls of missing names by the current task: d_alloc() +
    d_add(dentry, NULL) + dput() each; returns the dentries (fewer if a charge failed).
    Run it in a task (``k.call(stat_missing, n, task=t)``)."""
    s = kmem_cache_by_name(k, "dentry")
    lru = s.list_lru
    assert lru is not None
    if bulk:
        objs = kmem_cache_alloc_bulk(k, s, GFP_KERNEL, count)
        list_lru_add_bulk(k, lru, objs)
        return objs
    out = []
    for _ in range(count):
        idx = kmem_cache_alloc(k, s, GFP_KERNEL)
        if idx < 0:
            continue
        list_lru_add(k, lru, idx)
        out.append(idx)
    return np.asarray(out, dtype=np.int64)
