"""The concurrency explorer: every interleaving of the seed's code paths on simulated CPUs.

Write a scenario (:class:`Scenario`: a setup building a :class:`World`, tasks pinned to CPUs,
final assertions), then explore it with :func:`check` (a :class:`Result`) or :func:`model`
(raises :class:`CounterexampleFound` with the shrunk counterexample's swimlane), configured by
:class:`Config` (strategy ``dfs``, ``bounded``, ``dpor``, ``random`` or ``pct``).  See
docs/explorer.md.
"""

from memcgsim.explore.api import (
    CounterexampleFound,
    Result,
    ScenarioError,
    check,
    load_scenario,
    load_scenarios,
    model,
)
from memcgsim.explore.runtime import Scenario, TaskSpec
from memcgsim.explore.strategies import STRATEGIES, Config
from memcgsim.explore.world import World

__all__ = [
    "STRATEGIES",
    "Config",
    "CounterexampleFound",
    "Result",
    "Scenario",
    "ScenarioError",
    "TaskSpec",
    "World",
    "check",
    "load_scenario",
    "load_scenarios",
    "model",
]
