"""A user-written scenario with a deliberate race: two CPUs bump a shared counter with a plain
read then write (no atomic, no lock), so one update can be lost.

    memcgsim check examples/lost_update.py --strategy dpor     # exit 1: the race is caught

A scenario file defines ``SCENARIO`` (or ``SCENARIOS``): a setup that builds the initial state
and returns a World, tasks pinned to CPUs, and final assertions.
"""

from __future__ import annotations

from memcgsim.explore import Scenario, TaskSpec, World
from memcgsim.kernel.kernel import Kernel
from memcgsim.kernel.objects import KObject


class Counter(KObject):
    """A shared counter (think of a statistic updated without atomic_inc())."""

    ktype = "struct counter"

    def __init__(self) -> None:
        super().__init__()
        self.value = 0


def setup(k: Kernel) -> World:
    w = World.create(k)
    c = Counter()
    k.heap.adopt(c, "setup", static=True)
    w.extra["counter"] = c
    return w


def bump(k: Kernel, w: World) -> None:
    """counter->value++ as two accesses: READ_ONCE, then WRITE_ONCE."""
    c = w.extra["counter"]
    v = k.load(c, "value")
    k.store(c, "value", v + 1)


def check(k: Kernel, w: World) -> None:
    assert w.extra["counter"].value == 2, f"lost update: value is {w.extra['counter'].value}"


SCENARIO = Scenario(
    name="lost-update",
    description="two CPUs increment a counter with a plain read and write",
    setup=setup,
    tasks=(TaskSpec("bump0", 0, bump), TaskSpec("bump1", 1, bump)),
    check=check,
)
