"""A run that follows a previous run's scheduling decisions (Kernel.follow_script) is the run
that computes them: same choices, steps, outcome, choice points and decisions."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from memcgsim.explore import Config, check
from memcgsim.explore.runtime import Outcome, Policy, Script, execute
from memcgsim.explore.scenarios import BUILTINS
from memcgsim.explore.strategies import TreeNode, _preempt_after, _TreePolicy


def _same(out: Outcome) -> tuple[Any, ...]:
    assert out.script is not None
    return (out.choices, out.nr_steps, str(out.violation), out.fingerprint,
            [dataclasses.astuple(cp) for cp in out.new_points], out.script.ops,
            out.script.marks, out.script.choices)


@pytest.mark.parametrize("mutant", [None, "put-memcg-before-list-del", "get-not-tryget"])
@pytest.mark.parametrize("name", list(BUILTINS))
def test_following_a_script_is_the_same_run(name: str, mutant: str | None) -> None:
    # The first 150 schedules of bounded DFS (bound 2), each run both ways.
    sc = BUILTINS[name]
    stack: list[TreeNode] = []
    follow: tuple[Script, int] | None = None
    for _ in range(150):
        prefix = [n.chosen for n in stack]
        pre = stack[-1].preempt if stack else 0
        pol = _TreePolicy(2, pre)
        out = execute(sc, prefix, pol, mutant=mutant, script=True, follow=follow)
        if follow is not None:
            ref = execute(sc, prefix, _TreePolicy(2, pre), mutant=mutant, script=True)
            assert _same(out) == _same(ref)
        stack.extend(pol.nodes)
        if out.violation is not None:
            break
        while stack and not stack[-1].todo:
            stack.pop()
        if not stack:
            break
        n = stack[-1]
        n.chosen = n.todo.pop(0)
        n.preempt = _preempt_after(n.cp, n.chosen, stack[-2].preempt if len(stack) > 1 else 0)
        assert out.script is not None
        follow = (out.script, len(stack) - 1)


def test_a_script_needs_a_run_that_records_nothing() -> None:
    sc = BUILTINS["reader-vs-offline"]
    with pytest.raises(ValueError):
        execute(sc, (), Policy(), script=True, record=True)
    out = execute(sc, (), Policy(), script=True)
    assert out.script is not None
    with pytest.raises(ValueError):
        execute(sc, [1 - out.choices[0] % 2], Policy(), follow=(out.script, 1))


@pytest.mark.parametrize(("name", "bound", "schedules", "end_states"), [
    ("reader-vs-offline", 1, 711, 2),
    ("objcg-get-memcg-vs-offline", 2, 2801, 1),
])
def test_bounded_search_counts_as_before(name: str, bound: int, schedules: int,
                                         end_states: int) -> None:
    # Figures of main before schedule scripts (and snapshots); reader-vs-offline's since the
    # RCU signature counts read-side exits (rcu_gp is offered after a step that leaves a
    # section and enters another: 687 -> 711).
    r = check(name, Config(strategy="bounded", bound=bound))
    assert r.complete and r.violation is None
    assert (r.schedules, r.end_states) == (schedules, end_states)
