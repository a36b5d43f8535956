"""The ``memcgsim`` command line."""

from __future__ import annotations

import json
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


def _usage_error(message: str) -> typer.Exit:
    """One line on stderr, exit status 2 (bad input), no traceback."""
    print(f"memcgsim: error: {message}", file=sys.stderr)
    return typer.Exit(2)


def _workload_cmd(scenario: str, designs: str | None, option: str, size: str,
                  seed: int | None, per_object: bool, output: str | None, json_out: bool,
                  *, one: bool) -> None:
    """run and compare: load the workload, run it on the designs, print or write the result.

    Bad input becomes one line and exit status 2.
    """
    from memcgsim.report.compare import (
        compare_json,
        console,
        load_workload,
        parse_designs,
        print_compare,
        run_compare,
        write_atomic,
    )
    from memcgsim.workloads.spec import ScenarioError

    try:
        spec = load_workload(scenario, size)
        names = parse_designs(designs, option)
        if one and len(names) != 1:
            raise ScenarioError("--design", "", "expected one design (compare runs several)")
    except ScenarioError as e:
        raise _usage_error(str(e)) from None
    the_seed = spec.workload.seed if seed is None else seed
    results = run_compare(spec, names, size, the_seed, bulk=not per_object)
    data = compare_json(spec, size, the_seed, results)
    if one:
        data = {"workload": data["workload"], "size": size, "seed": the_seed,
                "design": names[0], **data["designs"][names[0]]}
    if output:
        write_atomic(output, data)
    if json_out:
        typer.echo(json.dumps(data, indent=2))
    else:
        print_compare(console(), spec, size, the_seed, results)


_SCENARIO_ARG = typer.Argument(help="a built-in workload or a scenario .toml file")
# The options run and compare share.
_SizeOpt = Annotated[str, typer.Option(help="small, default or large")]
_SeedOpt = Annotated[int | None, typer.Option(min=0, help="seed (default: the scenario's)")]
_JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
_PerObjectOpt = Annotated[bool, typer.Option(
    "--per-object", help="allocate and free one object at a time, not in bulk")]
_OutputOpt = Annotated[str | None, typer.Option(help="also write the JSON to this file")]


@app.command("run")
def run_cmd(
    scenario: Annotated[str, _SCENARIO_ARG],
    design: Annotated[str, typer.Option(help="accounting design")] = "memcg-ptr",
    size: _SizeOpt = "default",
    seed: _SeedOpt = None,
    json_out: _JsonOpt = False,
    per_object: _PerObjectOpt = False,
    output: _OutputOpt = None,
) -> None:
    """Run a workload on one design and report its metrics."""
    _workload_cmd(scenario, design, "--design", size, seed, per_object, output, json_out,
                  one=True)


@app.command("compare")
def compare_cmd(
    scenario: Annotated[str, _SCENARIO_ARG],
    designs: Annotated[str | None, typer.Option(help="comma-separated designs (default all)")
                       ] = None,
    size: _SizeOpt = "default",
    seed: _SeedOpt = None,
    json_out: _JsonOpt = False,
    per_object: _PerObjectOpt = False,
    output: _OutputOpt = None,
) -> None:
    """Run a workload on several designs and compare them side by side."""
    _workload_cmd(scenario, designs, "--designs", size, seed, per_object, output, json_out,
                  one=False)


@app.command()
def shell(
    file: Annotated[str | None, typer.Argument(
        help="script to run ('-' or none: standard input; interactive on a terminal)")] = None,
    design: Annotated[str, typer.Option(help="kernel-memory accounting design")] = "memcg-ptr",
    cpus: Annotated[int, typer.Option(min=1, max=64, help="simulated CPUs")] = 2,
    seed: Annotated[int, typer.Option(min=0, help="seed of the run")] = 0,
    strict: Annotated[bool, typer.Option(help="stop at the first failing command")] = False,
) -> None:
    """Run shell commands (mkdir, rmdir, cat, echo > FILE, spawn, alloc...) on the model's
    /sys/fs/cgroup; exit 1 if a command failed."""
    from memcgsim.designs import DESIGNS
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.shell.interp import Shell
    from memcgsim.shell.repl import interact
    from memcgsim.userspace import Userspace

    if design not in DESIGNS:
        raise typer.BadParameter(f"unknown design {design!r} (known: {', '.join(sorted(DESIGNS))})",
                                 param_hint="'--design'")
    if file is not None and file != "-":
        try:
            with open(file, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise typer.BadParameter(f"{file}: {reason}", param_hint="'FILE'") from None
    else:
        lines = None
    sh = Shell(Userspace(Kernel(nr_cpus=cpus, seed=seed, design=design)), sys.stdout, sys.stderr,
               strict=strict)
    if lines is None and sys.stdin.isatty():
        raise typer.Exit(interact(sh))
    raise typer.Exit(sh.run_lines(lines if lines is not None else sys.stdin))


@app.command()
def kselftest(
    tests: Annotated[list[str] | None, typer.Argument(
        help="tests to run (default: all of test_kmem)")] = None,
    design: Annotated[str, typer.Option(help="kernel-memory accounting design")] = "memcg-ptr",
    cpus: Annotated[int, typer.Option(min=1, max=64, help="simulated CPUs")] = 2,
    seed: Annotated[int, typer.Option(min=0, help="seed of the run")] = 0,
) -> None:
    """Run the kernel's cgroup kmem selftests (test_kmem.c, ported) on the model; TAP
    output, exit 1 if a test failed."""
    from memcgsim.designs import DESIGNS
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.selftests.cgroup.test_kmem import TESTS, main
    from memcgsim.userspace import Userspace

    if design not in DESIGNS:
        raise typer.BadParameter(f"unknown design {design!r} (known: {', '.join(sorted(DESIGNS))})",
                                 param_hint="'--design'")
    for name in tests or []:
        if name not in TESTS:
            raise typer.BadParameter(f"unknown test {name!r} (known: {', '.join(TESTS)})",
                                     param_hint="'TESTS'")
    raise typer.Exit(main(lambda: Userspace(Kernel(nr_cpus=cpus, seed=seed, design=design)),
                          tests or None, lambda line: print(line, flush=True)))


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
