"""The explorer's entry points: :func:`check` a scenario, :func:`model` for pytest.

>>> from memcgsim.explore import Config, check
>>> from memcgsim.explore.scenarios import BUILTINS
>>> r = check(BUILTINS["reader-vs-offline"], Config(strategy="bounded", bound=0))
>>> r.violation is None and r.complete
True
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memcgsim.explore.runtime import Scenario
from memcgsim.explore.strategies import Config, Unit, UnitResult, explore_unit, plan_units
from memcgsim.kernel.violations import Violation

__all__ = [
    "CounterexampleFound",
    "Result",
    "ScenarioError",
    "check",
    "load_scenario",
    "load_scenarios",
    "model",
]


class ScenarioError(ValueError):
    """A scenario name or file that cannot be used (bad input: exit status 2)."""


@dataclass
class Result:
    """What exploring one scenario (under one mutant) found."""

    scenario: str
    strategy: str
    mutant: str | None
    schedules: int
    #: executions abandoned by DPOR's sleep sets (redundant, not counted as schedules)
    blocked: int
    end_states: int
    seconds: float
    #: every schedule of the strategy was explored (no stop at a violation or a limit)
    complete: bool
    violation: Violation | None = None
    #: the violating schedule's choices
    choices: list[int] | None = None
    #: schedules explored up to and including the first violating one
    schedules_to_find: int | None = None
    units: int = 0
    config: Config = field(default_factory=Config)


def _merge(sc: Scenario, cfg: Config, mutant: str | None, results: list[UnitResult],
           seconds: float) -> Result:
    schedules = blocked = 0
    states: set[Any] = set()
    violation = None
    choices = None
    to_find = None
    complete = True
    for r in results:
        if violation is None and r.violation is not None:
            violation, choices = r.violation, r.choices
            to_find = schedules + r.schedules_to_find
        schedules += r.schedules
        blocked += r.blocked
        states |= r.end_states
        complete = complete and r.complete
        if r.violation is not None and cfg.stop_on_violation:
            complete = False
            break
        if cfg.max_schedules is not None and schedules >= cfg.max_schedules:
            complete = False
            break
    return Result(scenario=sc.name, strategy=cfg.strategy, mutant=mutant, schedules=schedules,
                  blocked=blocked, end_states=len(states), seconds=seconds, complete=complete,
                  violation=violation, choices=choices, schedules_to_find=to_find,
                  units=len(results), config=cfg)


# Worker processes load scenarios by reference (a built-in name or a file path).
_WORKER_CACHE: dict[str, Scenario] = {}


def _worker(ref: str, cfg: Config, mutant: str | None, unit: Unit) -> UnitResult:
    sc = _WORKER_CACHE.get(ref)
    if sc is None:
        sc = _WORKER_CACHE[ref] = load_scenario(ref)
    return explore_unit(sc, cfg, mutant, unit)


def check(scenario: Scenario | str, config: Config | None = None, *, mutant: str | None = None,
          jobs: int = 1) -> Result:
    """Explore ``scenario`` (an object, a built-in name or a file path) with ``config``.

    With ``jobs > 1`` the units of work are spread over processes (the scenario must then be
    given by name or path); verdicts and counts are those of ``jobs=1``.
    """
    cfg = config or Config()
    ref = scenario if isinstance(scenario, str) else None
    sc = load_scenario(scenario) if isinstance(scenario, str) else scenario
    if mutant is not None:
        from memcgsim.explore.mutants import MUTANTS

        if mutant not in MUTANTS:
            raise ScenarioError(f"unknown mutant {mutant!r} (known: {', '.join(MUTANTS)})")
    t0 = time.perf_counter()
    units = plan_units(sc, cfg, mutant)
    results: list[UnitResult] = []
    if jobs <= 1 or len(units) == 1:
        total = 0
        for u in units:
            r = explore_unit(sc, cfg, mutant, u)
            results.append(r)
            total += r.schedules
            if (r.violation is not None and cfg.stop_on_violation) or _limit(cfg, total):
                break
    else:
        if ref is None:
            raise ScenarioError("--jobs needs a scenario given by name or file")
        ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            # Handed out fewest preemptions first: those prefixes root the largest subtrees
            # (one can hold 40% of a bound-2 search), and started last one would keep a
            # single process busy long after the others ran dry.  Results are still
            # merged in unit order.
            order = sorted(range(len(units)), key=lambda i: (units[i].preempt, i))
            by_index = {i: pool.submit(_worker, ref, cfg, mutant, units[i]) for i in order}
            futs = [by_index[i] for i in range(len(units))]
            total = 0
            for f in futs:
                r = f.result()
                results.append(r)
                total += r.schedules
                if (r.violation is not None and cfg.stop_on_violation) or _limit(cfg, total):
                    for g in futs:
                        g.cancel()
                    break
    return _merge(sc, cfg, mutant, results, time.perf_counter() - t0)


def _limit(cfg: Config, total: int) -> bool:
    return cfg.max_schedules is not None and total >= cfg.max_schedules


class CounterexampleFound(AssertionError):
    """Raised by :func:`model` when a schedule violates a checker; carries the result."""

    def __init__(self, result: Result, text: str) -> None:
        super().__init__(text)
        self.result = result


def model(scenario: Scenario | str, config: Config | None = None, *,
          mutant: str | None = None) -> Result:
    """Explore ``scenario`` and raise :class:`CounterexampleFound` (an AssertionError, with
    the shrunk counterexample's swimlane) if any schedule violates a checker: the one-line
    use from pytest, as ``loom::model``."""
    res = check(scenario, config, mutant=mutant)
    if res.violation is not None and res.choices is not None:
        from memcgsim.explore.trace import render_swimlane, replay_choices, shrink_schedule

        sc = load_scenario(scenario) if isinstance(scenario, str) else scenario
        choices, every = shrink_schedule(sc, res.choices, res.violation, mutant=mutant,
                                         gp_every_step=res.strategy == "dpor")
        text = render_swimlane(replay_choices(sc, choices, mutant=mutant, gp_every_step=every))
        raise CounterexampleFound(res, f"{res.violation}\n{text}")
    return res


# ---------------------------------------------------------------------- scenario loading
def load_scenario(ref: str) -> Scenario:
    """A built-in scenario by name, or the single scenario a ``.py`` file defines."""
    scs = load_scenarios(ref)
    if len(scs) != 1:
        names = ", ".join(s.name for s in scs)
        raise ScenarioError(f"{ref} defines {len(scs)} scenarios ({names}); name one")
    return scs[0]


def load_scenarios(ref: str) -> list[Scenario]:
    """``all`` (every built-in), a built-in name, or a scenario file (``SCENARIO`` or
    ``SCENARIOS``, else every module-level Scenario)."""
    from memcgsim.explore.scenarios import BUILTINS

    if ref == "all":
        return list(BUILTINS.values())
    if ref in BUILTINS:
        return [BUILTINS[ref]]
    if "::" in ref:
        path, name = ref.split("::", 1)
        for s in _load_file(path):
            if s.name == name:
                return [s]
        raise ScenarioError(f"{path} defines no scenario named {name!r}")
    if ref.endswith(".py") or os.sep in ref:
        return _load_file(ref)
    known = ", ".join(BUILTINS)
    raise ScenarioError(f"unknown scenario {ref!r} (built-ins: {known}; or a FILE.py)")


def _load_file(path: str) -> list[Scenario]:
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(f"scenario file {path} does not exist")
    name = "memcgsim_scenario_" + str(abs(hash(str(p.resolve()))))
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise ScenarioError(f"cannot load {path} as a Python module")
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as e:
        raise ScenarioError(f"{path}: {type(e).__name__}: {e}") from None
    found: list[Scenario]
    if isinstance(getattr(mod, "SCENARIO", None), Scenario):
        found = [mod.SCENARIO]
    elif isinstance(getattr(mod, "SCENARIOS", None), list | tuple):
        found = [s for s in mod.SCENARIOS if isinstance(s, Scenario)]
    else:
        found = [v for v in vars(mod).values() if isinstance(v, Scenario)]
    if not found:
        raise ScenarioError(f"{path} defines no Scenario (set SCENARIO = Scenario(...))")
    return [s if s.source != "builtin" else _with_source(s, str(p)) for s in found]


def _with_source(s: Scenario, path: str) -> Scenario:
    from dataclasses import replace

    return replace(s, source=path)
