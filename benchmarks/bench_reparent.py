"""Reparenting work as the objects charged to a removed cgroup grow from 10 to 1,000,000.

For each design: a task in /a/b allocates N accounted kmalloc-64 objects and leaves; /a/b is
removed; the offline's reparenting is measured: items touched (ptrs or objcgs repointed,
objects repointed, cache copies reparented), scheduling points taken while holding
css_set_lock (or slab_mutex), and wall time of the whole rmdir until settled.  memcg-ptr and
objcg stay constant; walk grows linearly with N.

Run: ``.venv/bin/python benchmarks/bench_reparent.py`` (writes a table, ``--json``, and with
matplotlib installed a plot to ``--plot benchmarks/reparent_scaling.png``).
"""

from __future__ import annotations

import argparse
import json
import time

from memcgsim import Kernel
from memcgsim.kernel.heap import GFP_KERNEL_ACCOUNT
from memcgsim.mm.slab_common import kmem_cache_by_name
from memcgsim.mm.slub import kmem_cache_alloc_bulk

SIZES = [10, 100, 1_000, 10_000, 100_000, 1_000_000]
DESIGNS = ["walk", "memcg-ptr", "objcg", "cache-reparent"]


def measure(design: str, n: int) -> dict[str, float]:
    k = Kernel(nr_cpus=2, seed=0, design=design, check_at_quiescence=False, log_events=False)
    k.mkdir("/a", subtree_control="+memory")
    k.mkdir("/a/b")
    p = k.new_process("p", "/a/b")
    s = kmem_cache_by_name(k, "kmalloc-64")
    k.call(lambda k: kmem_cache_alloc_bulk(k, s, GFP_KERNEL_ACCOUNT, n), task=p)
    k.attach(p, "/")
    t0 = time.perf_counter()
    k.rmdir("/a/b")
    k.settle()
    dt = time.perf_counter() - t0
    w = k.design.reparent_work[-1]
    return {"touched": w.touched, "locked_steps": w.locked_steps, "steps": w.steps,
            "rmdir_ms": dt * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--plot", default="", help="write a PNG plot here (needs matplotlib)")
    args = ap.parse_args()
    res = {d: {n: measure(d, n) for n in SIZES} for d in DESIGNS}
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print("items touched / steps under lock, by objects charged to the removed cgroup")
        print(f"{'design':15}" + "".join(f"{n:>18,}" for n in SIZES))
        for d, row in res.items():
            cells = "".join(f"{int(r['touched']):>9,}/{int(r['locked_steps']):<8,}"
                            for r in row.values())
            print(f"{d:15}{cells}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for d, row in res.items():
            ax.loglog(SIZES, [max(1, row[n]["locked_steps"]) for n in SIZES], marker="o",
                      label=d)
        ax.set_xlabel("objects charged to the removed cgroup")
        ax.set_ylabel("scheduling points under css_set_lock / slab_mutex")
        ax.set_title("Reparenting work at offline")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
