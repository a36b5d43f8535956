"""Restoring a scenario's initial state from its snapshot is exactly equivalent to building it
afresh: the restored object graph is the fresh one (same shape, values and container order),
and runs from either give the same outcomes."""

from __future__ import annotations

import dataclasses
import random
import threading
import types
from collections import deque
from typing import Any

import pytest
from greenlet import greenlet

from memcgsim.explore import Config, Scenario, TaskSpec, World, check
from memcgsim.explore.mutants import MUTANTS
from memcgsim.explore.runtime import (
    _SNAPSHOTS,
    Outcome,
    Policy,
    _initial_state,
    _snapshot,
    execute,
)
from memcgsim.explore.scenarios import BUILTINS
from memcgsim.explore.snapshot import take
from memcgsim.explore.strategies import _RandomPolicy
from memcgsim.kernel.kernel import Kernel
from memcgsim.kernel.objects import KObject


def _isomorphic(a: Any, b: Any) -> None:
    """Assert that the object graphs from ``a`` and ``b`` are the same up to object identity:
    same types, values, members, container contents and order; closures of the same code."""
    pairs: dict[int, int] = {}
    todo: list[tuple[Any, Any, str]] = [(a, b, "root")]
    atoms = (int, str, float, bool, type(None), bytes, type, types.ModuleType,
             types.BuiltinFunctionType)
    while todo:
        x, y, path = todo.pop()
        assert type(x) is type(y), f"{path}: {type(x).__name__} != {type(y).__name__}"
        if isinstance(x, atoms):
            assert x == y, f"{path}: {x!r} != {y!r}"
            continue
        if id(x) in pairs:
            assert pairs[id(x)] == id(y), f"{path}: shared differently"
            continue
        pairs[id(x)] = id(y)
        if isinstance(x, greenlet):
            continue
        if isinstance(x, list | tuple | deque):
            assert len(x) == len(y), f"{path}: {len(x)} != {len(y)} items"
            todo.extend((p, q, f"{path}[{i}]") for i, (p, q) in enumerate(zip(x, y, strict=True)))
        elif isinstance(x, dict):
            assert len(x) == len(y), f"{path}: {list(x)} != {list(y)}"
            for i, ((kx, vx), (ky, vy)) in enumerate(zip(x.items(), y.items(), strict=True)):
                todo.append((kx, ky, f"{path}.key{i}"))
                todo.append((vx, vy, f"{path}[{kx!r}]"))
        elif isinstance(x, set | frozenset):
            assert list(x) == list(y), f"{path}: {x} != {y}"
        elif isinstance(x, types.FunctionType):
            assert x.__code__ is y.__code__, f"{path}: {x} != {y}"
            todo.extend((p, q, f"{path}.<cell>") for p, q in
                        zip(x.__closure__ or (), y.__closure__ or (), strict=True))
        elif isinstance(x, types.CellType):
            todo.append((x.cell_contents, y.cell_contents, f"{path}.contents"))
        elif isinstance(x, types.MethodType):
            assert x.__func__ is y.__func__, f"{path}: {x} != {y}"
            todo.append((x.__self__, y.__self__, f"{path}.__self__"))
        elif isinstance(x, random.Random):
            assert x.getstate() == y.getstate(), path
        elif isinstance(x, KObject | Kernel | World) or hasattr(x, "__dict__"):
            todo.append((vars(x), vars(y), f"{path}<{type(x).__name__}>"))
        else:
            assert x == y, f"{path}: {x!r} != {y!r}"


def _outcome(out: Outcome) -> tuple[Any, ...]:
    return (out.choices, out.nr_steps, str(out.violation), out.blocked, out.fingerprint,
            [(t, repr(a)) for t, a in out.steps], out.rcu_flags, out.tasks, out.locations,
            [dataclasses.astuple(cp) for cp in out.new_points])


@pytest.mark.parametrize("mutant", [None, *MUTANTS])
@pytest.mark.parametrize("name", list(BUILTINS))
def test_restored_state_is_the_fresh_one_after_runs(name: str, mutant: str | None) -> None:
    sc = BUILTINS[name]
    assert sc.snapshot
    _SNAPSHOTS.clear()
    snap = _snapshot(sc, mutant)
    assert snap is not None
    snap.in_use = False
    rng = random.Random(name)
    for _ in range(30):
        execute(sc, (), _RandomPolicy(rng), mutant=mutant, record=rng.random() < 0.5)
    assert _snapshot(sc, mutant) is snap
    k, w = _initial_state(sc, mutant, False)
    _isomorphic((snap.kernel, snap.world), (k, w))


@pytest.mark.parametrize("name", list(BUILTINS))
def test_runs_from_the_snapshot_equal_fresh_runs(name: str) -> None:
    sc = BUILTINS[name]
    fresh = Scenario(sc.name, sc.setup, sc.tasks, sc.check, nr_cpus=sc.nr_cpus)
    assert not fresh.snapshot
    for mutant in (None, "put-memcg-before-list-del", "kfree-not-kfree-rcu"):
        for seed in range(40):
            a = execute(sc, (), _RandomPolicy(random.Random(seed)), mutant=mutant,
                        record=seed % 2 == 0, locations=seed % 3 == 0)
            b = execute(fresh, (), _RandomPolicy(random.Random(seed)), mutant=mutant,
                        record=seed % 2 == 0, locations=seed % 3 == 0)
            assert _outcome(a) == _outcome(b)


def test_an_escaping_exception_drops_the_snapshot() -> None:
    sc = BUILTINS["reader-vs-offline"]
    key = (id(sc), None, threading.get_ident())
    _SNAPSHOTS.clear()
    execute(sc, (), Policy())
    first = _SNAPSHOTS[key][1]
    assert first is not None and not first.in_use
    with pytest.raises(RuntimeError):
        execute(sc, (99,) * 5, Policy())  # not a replayable prefix: NondeterminismError
    assert first.in_use
    assert check(sc, Config(strategy="bounded", bound=1)).complete
    assert _SNAPSHOTS[key][1] is not first


def test_state_it_cannot_restore_is_declined() -> None:
    def setup(k: Kernel) -> World:
        w = World.create(k)
        w.extra["rng"] = random.Random(1)
        return w

    sc = Scenario("rng", setup, (TaskSpec("a", 0, lambda k, w: None),), snapshot=True)
    k, w = _initial_state(sc, None, False)
    assert take(k, w) is None
    _SNAPSHOTS.clear()
    assert execute(sc, ()).violation is None
    assert _SNAPSHOTS[(id(sc), None, threading.get_ident())][1] is None
