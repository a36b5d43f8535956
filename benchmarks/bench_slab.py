"""Slab allocation speed: the per-object path and the bulk path, for every design.

Per-object: one ``kmem_cache_alloc()`` + ``kmem_cache_free()`` of an accounted kmalloc-64
object in a task in /a/b, through the design's hooks (charge, ownership, vmstat) and SLUB's
fast path, every scheduling point taken.  Bulk: ``kmem_cache_alloc_bulk()`` +
``kmem_cache_free_bulk()`` of 100,000 objects at a time.  A "pair" is one allocation and
one free.

Run: ``.venv/bin/python benchmarks/bench_slab.py`` (``--json`` for machine-readable output).
"""

from __future__ import annotations

import argparse
import json
import time

from memcgsim import Kernel
from memcgsim.designs import DESIGN_ORDER
from memcgsim.kernel.heap import GFP_KERNEL_ACCOUNT
from memcgsim.mm.slab_common import kmem_cache_by_name
from memcgsim.mm.slub import (
    kmem_cache_alloc,
    kmem_cache_alloc_bulk,
    kmem_cache_free,
    kmem_cache_free_bulk,
)


def bench(design: str, n: int, bulk_n: int, repeats: int) -> dict[str, float]:
    k = Kernel(nr_cpus=2, seed=0, design=design, check_at_quiescence=False, log_events=False)
    k.mkdir("/a", subtree_control="+memory")
    k.mkdir("/a/b")
    p = k.new_process("bench", "/a/b")
    s = kmem_cache_by_name(k, "kmalloc-64")

    def per_object(k: Kernel) -> None:
        for _ in range(n):
            kmem_cache_free(k, s, kmem_cache_alloc(k, s, GFP_KERNEL_ACCOUNT))

    def bulk(k: Kernel) -> None:
        for _ in range(10):
            kmem_cache_free_bulk(k, s, kmem_cache_alloc_bulk(k, s, GFP_KERNEL_ACCOUNT, bulk_n))

    best_one = best_bulk = float("inf")
    steps = 0.0
    for _ in range(repeats):
        s0 = k.steps
        t0 = time.perf_counter()
        k.call(per_object, task=p)
        best_one = min(best_one, time.perf_counter() - t0)
        steps = (k.steps - s0) / n
        t0 = time.perf_counter()
        k.call(bulk, task=p)
        best_bulk = min(best_bulk, time.perf_counter() - t0)
    return {
        "per_object_pairs_per_s": n / best_one,
        "per_object_us_per_pair": best_one / n * 1e6,
        "per_object_steps_per_pair": steps,
        "bulk_pairs_per_s": 10 * bulk_n / best_bulk,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=100_000, help="per-object pairs per repeat")
    ap.add_argument("--bulk", type=int, default=100_000, help="objects per bulk call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = {d: bench(d, args.n, args.bulk, args.repeats) for d in DESIGN_ORDER}
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"{'design':16} {'per-object pairs/s':>19} {'us/pair':>8} {'steps':>6} "
          f"{'bulk pairs/s':>13}")
    for d, r in res.items():
        print(f"{d:16} {r['per_object_pairs_per_s']:>19,.0f} "
              f"{r['per_object_us_per_pair']:>8.2f} {r['per_object_steps_per_pair']:>6.1f} "
              f"{r['bulk_pairs_per_s']:>13,.0f}")


if __name__ == "__main__":
    main()
