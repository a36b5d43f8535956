"""Fault injection: nth-call and seeded-probability rules, deterministic per seed."""

from __future__ import annotations

import pytest

from memcgsim import Kernel
from memcgsim.kernel.fault import FaultRule
from memcgsim.kernel.heap import kzalloc
from tests.conftest import RefObj


def _allocs(k: Kernel, n: int) -> list[bool]:
    def grab(k: Kernel) -> list[bool]:
        return [kzalloc(k, RefObj) is not None for _ in range(n)]

    return k.call(grab)


def test_probability_faults_are_reproducible_for_a_seed() -> None:
    def run(seed: int) -> list[bool]:
        k = Kernel(seed=seed, boot=False)
        k.faults.add("slab", site="grab", probability=0.3)
        return _allocs(k, 200)

    a, b, c = run(7), run(7), run(8)
    assert a == b
    assert a != c
    assert 30 <= a.count(False) <= 90


def test_times_caps_injected_failures(bare: Kernel) -> None:
    bare.faults.add("slab", site="*", probability=1.0, times=2)
    assert _allocs(bare, 4) == [False, False, True, True]
    assert len(bare.faults.injected) == 2


def test_rules_match_on_the_allocated_type(bare: Kernel) -> None:
    bare.faults.add("slab", site="struct test_obj", nth=1)
    assert _allocs(bare, 2) == [False, True]


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [({"kind": "disk"}, "fault kind"), ({"nth": 0}, "nth"), ({"probability": 2.0}, "probability")],
)
def test_bad_rules_are_rejected(kwargs: dict[str, object], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        FaultRule(**kwargs)  # type: ignore[arg-type]
