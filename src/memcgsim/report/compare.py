"""Running scenarios for the ``run`` and ``compare`` commands, and printing the results.

The JSON of ``compare`` is ``{"workload", "size", "seed", "designs": {NAME: {...}}}`` with
the per-design metrics of :class:`memcgsim.workloads.engine.RunResult`; ``run`` prints one
design's object.  Human output is a table with a row per metric and a column per design.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from memcgsim.designs import DESIGN_ORDER, DESIGNS
from memcgsim.workloads.builtin import BUILTINS, builtin_scenario
from memcgsim.workloads.engine import RunResult, run_workload
from memcgsim.workloads.spec import SIZES, ScenarioError, WorkloadSpec, load_scenario

__all__ = [
    "METRICS",
    "compare_json",
    "console",
    "load_workload",
    "parse_designs",
    "print_compare",
    "run_compare",
    "write_atomic",
]

#: (key, label, format) of the rows of the human table
METRICS: list[tuple[str, str, str]] = [
    ("dying_at_end", "dying cgroups at end (settled)", "{:d}"),
    ("dying_peak", "dying cgroups, peak", "{:d}"),
    ("dying_caches_at_end", "dying cache copies at end", "{:d}"),
    ("slab_pages_peak", "slab pages, peak", "{:,d}"),
    ("slab_pages_end", "slab pages at end", "{:,d}"),
    ("slab_utilization", "slab utilization at end", "{:.1%}"),
    ("pinned_bytes_at_end", "bytes pinned by removed cgroups", "{:,d}"),
    ("reparent_work_max", "reparent work, max (items)", "{:,d}"),
    ("reparent_locked_steps_max", "reparent steps under lock, max", "{:,d}"),
    ("alloc_steps_mean", "steps per allocation", "{:.1f}"),
    ("objects_allocated", "objects allocated", "{:,d}"),
    ("alloc_failures", "allocations failed", "{:,d}"),
    ("reclaimed_objects", "objects reclaimed", "{:,d}"),
    ("conservation_ok", "conservation check", "{}"),
    ("sim_seconds", "simulated seconds", "{:,.0f}"),
    ("wall_seconds", "wall seconds", "{:.2f}"),
]


def load_workload(name: str, size: str) -> WorkloadSpec:
    """A built-in by name, or a scenario file (scaled to ``size``)."""
    if size not in SIZES:
        raise ScenarioError("--size", "", f"unknown size {size!r} (sizes: {', '.join(SIZES)})")
    if name in BUILTINS:
        return builtin_scenario(name, size)
    if name.endswith(".toml") or os.path.sep in name or Path(name).exists():
        return load_scenario(name).scaled(size)
    raise ScenarioError(name, "", f"no such built-in workload or scenario file (built-ins: "
                                  f"{', '.join(BUILTINS)})")


def parse_designs(value: str | None, option: str = "--designs") -> list[str]:
    """``a,b,c`` -> design names (all of them, in historical order, for None or "all")."""
    if value is None or value == "all":
        return list(DESIGN_ORDER)
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise ScenarioError(option, "", "expected a comma-separated list of designs")
    for n in names:
        if n not in DESIGNS:
            raise ScenarioError(option, "", f"unknown design {n!r} (known: "
                                            f"{', '.join(DESIGN_ORDER)})")
    return names


def run_compare(spec: WorkloadSpec, designs: list[str], size: str, seed: int | None,
                bulk: bool = True) -> dict[str, RunResult]:
    return {d: run_workload(spec, d, size=size, seed=seed, bulk=bulk) for d in designs}


def compare_json(spec: WorkloadSpec, size: str, seed: int,
                 results: dict[str, RunResult]) -> dict[str, Any]:
    return {
        "workload": spec.workload.name,
        "size": size,
        "seed": seed,
        "designs": {d: r.to_json() for d, r in results.items()},
    }


def console() -> Console:
    """A console wide enough for a five-design table even when not on a terminal."""
    c = Console()
    if not c.is_terminal:
        c = Console(width=120)
    return c


def print_compare(console: Console, spec: WorkloadSpec, size: str, seed: int,
                  results: dict[str, RunResult]) -> None:
    t = Table(title=f"{spec.workload.name} ({size}, seed {seed}): {spec.workload.description}",
              title_justify="left")
    t.add_column("metric", no_wrap=True)
    for d in results:
        t.add_column(d, justify="right")
    for key, label, fmt in METRICS:
        row = [label]
        for r in results.values():
            v = getattr(r, key)
            if key == "conservation_ok":
                row.append("ok" if v else "FAILED")
            else:
                row.append(fmt.format(v))
        t.add_row(*row)
    console.print(t)
    bad = {d: r.violations for d, r in results.items() if r.violations}
    for d, vs in bad.items():
        console.print(f"[red]{d}: {len(vs)} violation(s); first: {vs[0]}[/red]")


def write_atomic(path: str, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename (never half written)."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent if str(p.parent) else ".")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
