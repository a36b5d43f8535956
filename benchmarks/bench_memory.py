"""Memory per live simulated object: 10 million live accounted objects.

A task in /a/b allocates ``--objects`` kmalloc-64 objects in bulk (and a dentry share on the
LRU), under the objcg design, and holds them.  The figure is the growth of the process's
resident set divided by the number of live objects: the slab arrays (ownership vector, free
stacks, page arrays), the LRU links of the dentries, and the arrays the test holds the object
handles in.

Run: ``.venv/bin/python benchmarks/bench_memory.py`` (``--objects 10000000``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os

import numpy as np

from memcgsim import Kernel
from memcgsim.kernel.heap import GFP_KERNEL_ACCOUNT
from memcgsim.mm.list_lru import list_lru_add_bulk
from memcgsim.mm.slab_common import kmem_cache_by_name
from memcgsim.mm.slub import kmem_cache_alloc_bulk


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--objects", type=int, default=10_000_000)
    ap.add_argument("--design", default="objcg")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    k = Kernel(nr_cpus=2, seed=0, design=args.design, check_at_quiescence=False,
               log_events=False)
    k.mkdir("/a", subtree_control="+memory")
    k.mkdir("/a/b")
    p = k.new_process("bench", "/a/b")
    km = kmem_cache_by_name(k, "kmalloc-64")
    de = kmem_cache_by_name(k, "dentry")
    gc.collect()
    before = rss_bytes()
    held: list[np.ndarray] = []
    n_dentry = args.objects // 5
    batch = 1_000_000

    def body(k: Kernel) -> None:
        left = args.objects - n_dentry
        while left:
            n = min(batch, left)
            held.append(kmem_cache_alloc_bulk(k, km, GFP_KERNEL_ACCOUNT, n))
            left -= n
        left = n_dentry
        while left:
            n = min(batch, left)
            objs = kmem_cache_alloc_bulk(k, de, GFP_KERNEL_ACCOUNT, n)
            assert de.list_lru is not None
            list_lru_add_bulk(k, de.list_lru, objs)
            held.append(objs)
            left -= n

    k.call(body, task=p)
    gc.collect()
    after = rss_bytes()
    live = km.nr_inuse + de.nr_inuse + sum(
        c.nr_inuse for c in k.slab.caches if c.root in (km, de) and c is not km and c is not de)
    arrays = km.arena.nbytes() + de.arena.nbytes()
    res = {
        "live_objects": live,
        "rss_growth_bytes": after - before,
        "bytes_per_live_object": (after - before) / live,
        "slab_array_bytes_per_object": arrays / live,
    }
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{live:,} live objects: RSS grew {res['rss_growth_bytes'] / 2**20:,.0f} MiB, "
              f"{res['bytes_per_live_object']:.1f} bytes per live object "
              f"(slab arrays alone {res['slab_array_bytes_per_object']:.1f})")


if __name__ == "__main__":
    main()
