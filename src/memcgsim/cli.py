"""The ``memcgsim`` command line."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from memcgsim import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="memcgsim: an executable model of the Linux memcg kernel-memory accounting "
         "around mem_cgroup_ptr.",
    pretty_exceptions_enable=False,
)


@app.command()
def demo(
    objects: Annotated[int, typer.Option(min=1, max=1_000_000,
                                         help="accounted objects allocated in /a/b")] = 1000,
    cpus: Annotated[int, typer.Option(min=1, max=64, help="simulated CPUs")] = 2,
    seed: Annotated[int, typer.Option(min=0, help="seed of the run")] = 0,
) -> None:
    """Narrate the seed scenario: rmdir reparents a few ptrs, not every object."""
    from memcgsim.report.narrate import narrate_seed

    raise typer.Exit(narrate_seed(Console(), nr_objects=objects, nr_cpus=cpus, seed=seed))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"memcgsim {__version__}")


# ---------------------------------------------------------------------- explorer (issue 4)
@app.command("check")
def check_cmd(
    target: Annotated[str, typer.Argument(
        help="a built-in scenario, 'all', or a scenario file FILE.py")] = "all",
    strategy: Annotated[str, typer.Option(
        help="dfs | bounded | dpor | random | pct")] = "dpor",
    bound: Annotated[int, typer.Option(min=0, help="preemption bound of 'bounded'")] = 2,
    depth: Annotated[int, typer.Option(min=1, help="bug depth d of 'pct'")] = 3,
    runs: Annotated[int, typer.Option(min=1, help="runs of 'random' and 'pct'")] = 1000,
    mutant: Annotated[str | None, typer.Option(
        help="apply a seed mutant by name, or 'all' for the whole catalogue")] = None,
    jobs: Annotated[int, typer.Option(min=1, max=64, help="worker processes")] = 1,
    seed: Annotated[int, typer.Option(min=0, help="seed of 'random' and 'pct'")] = 0,
    max_schedules: Annotated[int | None, typer.Option(
        min=1, help="stop after this many schedules per scenario")] = None,
    trace_dir: Annotated[str, typer.Option(
        help="where counterexample traces are written")] = "memcgsim-traces",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
) -> None:
    """Explore schedules of the seed's races; exit 0 if no violation, 1 if one is found."""
    from memcgsim.explore.cli import run_check

    raise typer.Exit(run_check(
        target, strategy=strategy, bound=bound, depth=depth, runs=runs, mutant=mutant,
        jobs=jobs, seed=seed, max_schedules=max_schedules, trace_dir=trace_dir,
        as_json=as_json))


@app.command("replay")
def replay_cmd(
    trace: Annotated[str, typer.Argument(help="a trace file written by 'memcgsim check'")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
) -> None:
    """Replay a counterexample trace step for step; exit 1 if it shows a violation."""
    from memcgsim.explore.cli import run_replay

    raise typer.Exit(run_replay(trace, as_json=as_json))


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad usage is one line on stderr and exit status 2, never a traceback."""
    try:
        rv = app(args=argv, standalone_mode=False)
    except typer.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        # Click's usage errors (Typer vendors Click): they carry a message and an exit code.
        fmt = getattr(e, "format_message", None)
        code = getattr(e, "exit_code", None)
        if fmt is None or not isinstance(code, int):
            raise
        if type(e).__name__ == "NoArgsIsHelpError":
            print(fmt(), file=sys.stderr)
            sys.exit(code)
        ctx = getattr(e, "ctx", None)
        cmd = ctx.command_path if ctx is not None else "memcgsim"
        print(f"{cmd}: error: {fmt()}", file=sys.stderr)
        sys.exit(code)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
