"""``memcgsim check`` and ``memcgsim replay``: the explorer's command-line front end.

Exit status: 0 when no violation is found (or a replayed trace shows none), 1 when one is,
2 on bad input (an unknown scenario, strategy or mutant, an unreadable trace), always with one
line on stderr and no traceback.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from memcgsim.explore.api import Result, ScenarioError, check, load_scenario, load_scenarios
from memcgsim.explore.runtime import NondeterminismError, Scenario
from memcgsim.explore.strategies import STRATEGIES, Config
from memcgsim.explore.trace import (
    TraceError,
    load_trace,
    render_swimlane,
    replay_choices,
    save_trace,
    shrink_schedule,
)

__all__ = ["run_check", "run_replay"]


def _fail(cmd: str, msg: str) -> int:
    print(f"memcgsim {cmd}: error: {msg}", file=sys.stderr)
    return 2


def _ref(sc: Scenario) -> str:
    return sc.name if sc.source == "builtin" else f"{sc.source}::{sc.name}"


def _trace_path(trace_dir: str, sc: Scenario, mutant: str | None, kind: str) -> Path:
    stem = sc.name + (f"-{mutant}" if mutant else "") + f"-{kind}"
    return Path(trace_dir) / (re.sub(r"[^A-Za-z0-9._-]+", "_", stem) + ".json")


def run_check(target: str, *, strategy: str = "dpor", bound: int = 2, depth: int = 3,
              runs: int = 1000, mutant: str | None = None, jobs: int = 1, seed: int = 0,
              max_schedules: int | None = None, trace_dir: str = "memcgsim-traces",
              as_json: bool = False) -> int:
    """The ``check`` command; returns the exit status."""
    from memcgsim.explore.mutants import MUTANTS

    if strategy not in STRATEGIES:
        return _fail("check", f"unknown strategy {strategy!r} (choose from "
                              f"{', '.join(STRATEGIES)})")
    try:
        scenarios = load_scenarios(target)
    except ScenarioError as e:
        return _fail("check", str(e))
    if mutant is None:
        mutants: list[str | None] = [None]
    elif mutant == "all":
        mutants = list(MUTANTS)
    elif mutant in MUTANTS:
        mutants = [mutant]
    else:
        return _fail("check", f"unknown mutant {mutant!r} (known: {', '.join(MUTANTS)}, all)")
    cfg = Config(strategy=strategy, bound=bound, depth=depth, runs=runs, seed=seed,
                 max_schedules=max_schedules)
    results: list[Result] = []
    violations: list[dict[str, Any]] = []
    mutant_table: dict[str, dict[str, Any]] = {}
    for m in mutants:
        for sc in scenarios:
            try:
                res = check(_ref(sc) if jobs > 1 else sc, cfg, mutant=m, jobs=jobs)
            except ScenarioError as e:
                return _fail("check", str(e))
            results.append(res)
            entry: dict[str, Any] | None = None
            if res.violation is not None and res.choices is not None:
                entry = _counterexample(sc, res, m, trace_dir, strategy, as_json)
                violations.append(entry)
            if not as_json:
                _print_result(res)
            if m is not None:
                row = mutant_table.setdefault(m, {"found": False, "strategy": strategy,
                                                  "schedules_to_find": None,
                                                  "scenario": None})
                if res.violation is not None and not row["found"]:
                    row.update(found=True, schedules_to_find=res.schedules_to_find,
                               scenario=sc.name, kind=str(res.violation.kind))
                if row["found"]:
                    break  # this mutant is caught; next mutant
    if mutant == "all" and not as_json:
        print()
        print(f"{'mutant':28} {'found':6} {'scenario':28} schedules_to_find")
        for name, row in mutant_table.items():
            print(f"{name:28} {'yes' if row['found'] else 'NO':6} {row['scenario'] or '-':28} "
                  f"{row['schedules_to_find'] if row['found'] else '-'}")
    if as_json:
        doc: dict[str, Any] = {
            "scenario": target if len(scenarios) > 1 else scenarios[0].name,
            "strategy": strategy,
            "bound": bound if strategy == "bounded" else None,
            "depth": depth if strategy == "pct" else None,
            "runs": runs if strategy in ("random", "pct") else None,
            "seed": seed,
            "jobs": jobs,
            "mutant": mutant,
            "schedules": sum(r.schedules for r in results),
            "seconds": round(sum(r.seconds for r in results), 3),
            "violations": violations,
            "results": [_result_json(r) for r in results],
        }
        if mutant is not None:
            doc["mutants"] = mutant_table
        print(json.dumps(doc, indent=2))
    return 1 if violations else 0


def _result_json(r: Result) -> dict[str, Any]:
    return {
        "scenario": r.scenario, "strategy": r.strategy, "mutant": r.mutant,
        "schedules": r.schedules, "sleep_blocked": r.blocked, "end_states": r.end_states,
        "seconds": round(r.seconds, 3), "complete": r.complete,
        "violation": r.violation.to_json() if r.violation is not None else None,
        "schedules_to_find": r.schedules_to_find,
    }


def _print_result(r: Result) -> None:
    what = f"{r.scenario}" + (f" [mutant {r.mutant}]" if r.mutant else "")
    how = r.strategy + (f" bound {r.config.bound}" if r.strategy == "bounded" else "") \
        + (f" depth {r.config.depth}" if r.strategy == "pct" else "")
    verdict = "no violation" if r.violation is None else \
        f"VIOLATION after {r.schedules_to_find} schedules: {r.violation.kind}: " \
        f"{r.violation.message}"
    done = "" if r.complete or r.violation is not None else " (stopped at the limit)"
    print(f"{what}: {how}: {r.schedules} schedules, {r.end_states} end states, "
          f"{r.seconds:.2f} s{done}: {verdict}")


def _counterexample(sc: Scenario, res: Result, mutant: str | None, trace_dir: str,
                    strategy: str, as_json: bool) -> dict[str, Any]:
    assert res.violation is not None and res.choices is not None
    choices, every = shrink_schedule(sc, res.choices, res.violation, mutant=mutant,
                                     gp_every_step=res.strategy == "dpor")
    rp = replay_choices(sc, choices, mutant=mutant, gp_every_step=every)
    v = rp.violation or res.violation
    path = _trace_path(trace_dir, sc, mutant, str(v.kind))
    save_trace(path, rp, strategy=strategy)
    if not as_json:
        print(render_swimlane(rp))
        print(f"trace: {path}  (memcgsim replay {path})")
    d = v.to_json()
    d.update(scenario=sc.name, mutant=mutant, trace=str(path), preemptions=rp.preemptions)
    return d


def run_replay(trace: str, *, as_json: bool = False) -> int:
    """The ``replay`` command; returns the exit status."""
    from memcgsim.explore.mutants import MUTANTS

    try:
        tf = load_trace(trace)
        ref = tf.scenario if tf.source == "builtin" else f"{tf.source}::{tf.scenario}"
        sc = load_scenario(ref)
    except (TraceError, ScenarioError) as e:
        return _fail("replay", str(e))
    if tf.mutant is not None and tf.mutant not in MUTANTS:
        return _fail("replay", f"{trace}: unknown mutant {tf.mutant!r}")
    try:
        rp = replay_choices(sc, tf.choices, mutant=tf.mutant, gp_every_step=tf.gp_every_step)
    except NondeterminismError as e:
        return _fail("replay", f"{trace} does not match scenario {sc.name}: {e}")
    same = None
    if tf.violation is not None:
        same = rp.violation is not None and str(rp.violation.kind) == tf.violation.get("kind") \
            and rp.violation.message == tf.violation.get("message")
    if as_json:
        print(json.dumps({
            "scenario": sc.name, "mutant": tf.mutant, "choices": len(tf.choices),
            "violation": rp.violation.to_json() if rp.violation else None,
            "same_as_recorded": same,
        }, indent=2))
    else:
        print(render_swimlane(rp))
        if same is True:
            print("replayed: the same violation as recorded")
        elif same is False:
            print("replayed: a DIFFERENT outcome than recorded")
    return 1 if rp.violation is not None else 0
