"""Determinism: the same seed and inputs give the same run, event for event."""

from __future__ import annotations

from memcgsim import Kernel
from memcgsim.workloads.seed import run_seed_scenario


def _log(seed: int, probability: float) -> list[str]:
    k = Kernel(nr_cpus=2, seed=seed)
    k.faults.add("slab", site="ida_alloc", probability=probability)
    try:
        run_seed_scenario(k, nr_objects=300)
    except Exception as e:
        k.trace("aborted", type(e).__name__, str(e))
    return list(k.event_log())


def test_same_seed_same_event_log() -> None:
    assert _log(3, 0.0) == _log(3, 0.0)
    assert _log(5, 0.3) == _log(5, 0.3)


def test_seed_changes_the_run_when_randomness_is_used() -> None:
    logs = {tuple(_log(s, 0.3)) for s in range(6)}
    assert len(logs) > 1
