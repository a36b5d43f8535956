"""The narrated seed scenario for ``memcgsim demo``."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from memcgsim.kernel.kernel import Kernel
from memcgsim.workloads.seed import SeedStep, run_seed_scenario

__all__ = ["narrate_seed"]


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def narrate_seed(console: Console, *, nr_objects: int, nr_cpus: int, seed: int) -> int:
    """Run the seed scenario and print what happens at each step; exit status 0 or 1."""
    k = Kernel(nr_cpus=nr_cpus, seed=seed)
    console.print(
        f"[bold]memcgsim[/bold]: the seed scenario of [italic]\"[PATCH RFC 02/14] mm: memcg: "
        f"introduce mem_cgroup_ptr\"[/italic] on {nr_cpus} simulated CPUs, seed {seed}\n")

    def on_step(s: SeedStep) -> None:
        console.rule(f"[bold cyan]{s.title}")
        console.print(s.what)
        t = Table(show_header=True, header_style="bold")
        t.add_column("memcg")
        t.add_column("memory.current", justify="right")
        t.add_column("css refs", justify="right")
        for name in ("a", "b"):
            if name in s.memory_current:
                refs = s.css_refs.get(name)
                t.add_row(f"/{'a/b' if name == 'b' else 'a'}", _kib(s.memory_current[name]),
                          "-" if refs is None else str(refs))
            else:
                t.add_row(f"/{'a/b' if name == 'b' else 'a'}", "[dim]freed[/dim]", "")
        console.print(t)
        for who, where in s.ptrs.items():
            console.print(f"  {who}: {where}")
        console.print(f"  dying cgroups under the root: {s.dying_under_root}; live objects: "
                      f"{s.live_objects}; ptrs repointed per offline: {s.reparent_nr or '-'}")

    res = run_seed_scenario(k, nr_objects=nr_objects, on_step=on_step)
    console.rule("[bold]result")
    console.print(f"scheduling points: {k.steps:,}; grace periods: {k.rcu.nr_gps}; "
                  f"violations: {len(k.violations)}; leaked objects: {len(res.leaked)}")
    if res.stranded_bytes:
        console.print(
            f"[yellow]note[/yellow]: {res.stranded_bytes} bytes of byte-stock remainder were left "
            "charged to ancestors by freed memcgs (RFC 01/14 keeps them in nr_stocked_bytes, "
            "which nothing hands on; obj_cgroup's nr_charged_bytes fixed this in 5.9)")
    return 0 if not k.violations and not res.leaked else 1
