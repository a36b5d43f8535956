"""Wall time of the built-in workloads on every design (bulk path, the default).

Run: ``.venv/bin/python benchmarks/bench_workloads.py`` (``--size``, ``--workloads``,
``--json``).  The target is ``container-host`` at ``default`` size within 60 s per design.
"""

from __future__ import annotations

import argparse
import json

from memcgsim.designs import DESIGN_ORDER
from memcgsim.workloads.builtin import BUILTINS, builtin_scenario
from memcgsim.workloads.engine import run_workload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="default")
    ap.add_argument("--workloads", default="container-host",
                    help=f"comma-separated, or all ({', '.join(BUILTINS)})")
    ap.add_argument("--per-object", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    names = list(BUILTINS) if args.workloads == "all" else args.workloads.split(",")
    res: dict[str, dict[str, dict[str, float]]] = {}
    for w in names:
        spec = builtin_scenario(w, args.size)
        res[w] = {}
        for d in DESIGN_ORDER:
            r = run_workload(spec, d, size=args.size, bulk=not args.per_object)
            res[w][d] = {"wall_seconds": r.wall_seconds, "objects": r.objects_allocated,
                         "objects_per_s": r.objects_allocated / r.wall_seconds}
            if not args.json:
                print(f"{w:26} {args.size:8} {d:15} {r.wall_seconds:7.2f} s  "
                      f"{r.objects_allocated:>10,} objects  "
                      f"{r.objects_allocated / r.wall_seconds:>9,.0f} objects/s", flush=True)
    if args.json:
        print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
