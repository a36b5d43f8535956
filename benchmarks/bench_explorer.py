"""The concurrency explorer's speed targets (issue 4), measured.

Parts (all by default):

- ``rate``: schedules per second on one core, ``reader-vs-offline``, preemption-bounded DFS
  (bound 2) and random walk;
- ``bound2``: bound-2 exhaustive exploration of every built-in, with ``--jobs`` processes;
- ``dpor``: DPOR against plain DFS on ``release-vs-reparent`` (schedules and verdict; DFS is
  stopped at ``--dfs-cap`` schedules if it has not finished);
- ``mutants``: which strategy (and bound) finds each seed mutant, after how many schedules.

Run: ``.venv/bin/python benchmarks/bench_explorer.py [--part rate] [--jobs 2] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from memcgsim.explore import Config, check
from memcgsim.explore.mutants import MUTANTS
from memcgsim.explore.scenarios import BUILTINS


def bench_rate(nr: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for strat, cfg in (("bounded-2", Config(strategy="bounded", bound=2, max_schedules=nr)),
                       ("random", Config(strategy="random", runs=nr))):
        t0 = time.perf_counter()
        r = check("reader-vs-offline", cfg)
        dt = time.perf_counter() - t0
        out[strat] = {"schedules": r.schedules, "seconds": round(dt, 2),
                      "schedules_per_second": round(r.schedules / dt)}
    return out


def bench_bound2(jobs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    for name in BUILTINS:
        t1 = time.perf_counter()
        r = check(name, Config(strategy="bounded", bound=2), jobs=jobs)
        out[name] = {"schedules": r.schedules, "complete": r.complete,
                     "violation": str(r.violation.kind) if r.violation else None,
                     "seconds": round(time.perf_counter() - t1, 1)}
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    out["jobs"] = jobs
    return out


def bench_dpor(dfs_cap: int, jobs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mutant in (None, "put-memcg-before-list-del"):
        key = mutant or "seed"
        dpor = check("release-vs-reparent", Config(strategy="dpor"), mutant=mutant, jobs=jobs)
        dfs = check("release-vs-reparent", Config(strategy="dfs", max_schedules=dfs_cap),
                    mutant=mutant, jobs=jobs)
        out[key] = {
            "dpor": {"schedules": dpor.schedules, "complete": dpor.complete,
                     "violation": str(dpor.violation.kind) if dpor.violation else None,
                     "schedules_to_find": dpor.schedules_to_find,
                     "seconds": round(dpor.seconds, 2)},
            "dfs": {"schedules": dfs.schedules, "complete": dfs.complete,
                    "violation": str(dfs.violation.kind) if dfs.violation else None,
                    "schedules_to_find": dfs.schedules_to_find,
                    "seconds": round(dfs.seconds, 2)},
        }
    return out


#: strategies tried for each mutant (bound 2 only where bound 1 found nothing)
TRIES = (
    Config(strategy="dpor"),
    Config(strategy="bounded", bound=1),
    Config(strategy="bounded", bound=2),
    Config(strategy="pct", depth=3, runs=2000),
    Config(strategy="random", runs=2000),
)


def bench_mutants() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mutant in MUTANTS:
        rows: list[dict[str, Any]] = []
        for cfg in TRIES:
            if cfg.strategy == "bounded" and cfg.bound == 2 and rows[-1]["found"]:
                continue
            found = None
            for name in BUILTINS:
                r = check(name, cfg, mutant=mutant)
                if r.violation is not None:
                    found = {"scenario": name, "kind": str(r.violation.kind),
                             "schedules_to_find": r.schedules_to_find,
                             "seconds": round(r.seconds, 2)}
                    break
            label = cfg.strategy + (f" bound {cfg.bound}" if cfg.strategy == "bounded" else "") \
                + (f" depth {cfg.depth}" if cfg.strategy == "pct" else "")
            rows.append({"strategy": label, "found": found})
        out[mutant] = rows
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--part", choices=("rate", "bound2", "dpor", "mutants", "all"),
                    default="all")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("-n", type=int, default=5000, help="schedules for the rate")
    ap.add_argument("--dfs-cap", type=int, default=100_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res: dict[str, Any] = {}
    if args.part in ("rate", "all"):
        res["rate"] = bench_rate(args.n)
    if args.part in ("bound2", "all"):
        res["bound2"] = bench_bound2(args.jobs)
    if args.part in ("dpor", "all"):
        res["dpor"] = bench_dpor(args.dfs_cap, args.jobs)
    if args.part in ("mutants", "all"):
        res["mutants"] = bench_mutants()
    print(json.dumps(res, indent=2) if args.json else _text(res))


def _text(res: dict[str, Any]) -> str:
    lines = []
    if "rate" in res:
        for k, v in res["rate"].items():
            lines.append(f"reader-vs-offline {k}: {v['schedules_per_second']:,} schedules/s "
                         f"({v['schedules']} in {v['seconds']} s, one process)")
    if "bound2" in res:
        b = res["bound2"]
        for name in BUILTINS:
            v = b[name]
            lines.append(f"bound 2 {name}: {v['schedules']:,} schedules, {v['seconds']} s, "
                         f"{'complete' if v['complete'] else 'STOPPED'}, "
                         f"violation {v['violation']}")
        lines.append(f"bound 2, all built-ins, --jobs {b['jobs']}: {b['total_seconds']} s")
    if "dpor" in res:
        for key, v in res["dpor"].items():
            lines.append(f"release-vs-reparent ({key}): DPOR {v['dpor']} | DFS {v['dfs']}")
    if "mutants" in res:
        for m, rows in res["mutants"].items():
            found = [f"{r['strategy']}: {r['found']['scenario']} after "
                     f"{r['found']['schedules_to_find']}" if r["found"] else
                     f"{r['strategy']}: not found" for r in rows]
            lines.append(f"{m}: " + "; ".join(found))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
