"""Fault injection in the spirit of failslab and fail-nth (Documentation/fault-injection/).

A rule names a kind of allocation (``"slab"`` for kmalloc and friends, ``"percpu"`` for
alloc_percpu and so percpu_ref_init), a call site (a glob matched against the allocating model
function's name, the allocated type, or ``"site:type"``), and when to fail: the ``nth`` matching
call (fail-nth), or each call with ``probability`` (failslab's probability, decided through the
run's chooser so that a seed or a recorded trace reproduces it), at most ``times`` times.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel

__all__ = ["FaultInjector", "FaultRule", "InjectedFault"]

KINDS = ("slab", "percpu", "*")


@dataclass
class FaultRule:
    """One failslab-style rule."""

    kind: str = "slab"
    site: str = "*"
    #: fail the nth matching call (1-based) and no other
    nth: int | None = None
    #: otherwise fail each matching call with this probability
    probability: float = 0.0
    #: stop after this many injected failures (-1: no limit)
    times: int = -1
    #: matching calls seen so far
    calls: int = 0
    #: failures injected so far
    injected: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.nth is not None and self.nth < 1:
            raise ValueError(f"nth must be >= 1, not {self.nth}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be within 0..1, not {self.probability}")

    def matches(self, kind: str, site: str, what: str) -> bool:
        if self.kind != "*" and self.kind != kind:
            return False
        pat = self.site
        return (fnmatch.fnmatchcase(site, pat) or fnmatch.fnmatchcase(what, pat)
                or fnmatch.fnmatchcase(f"{site}:{what}", pat))


@dataclass(frozen=True)
class InjectedFault:
    step: int
    kind: str
    site: str
    what: str


class FaultInjector:
    """The run's fault-injection rules and the record of what they injected."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.rules: list[FaultRule] = []
        self.injected: list[InjectedFault] = []

    def add(self, kind: str = "slab", site: str = "*", *, nth: int | None = None,
            probability: float = 0.0, times: int = -1) -> FaultRule:
        """Add a rule; with neither ``nth`` nor ``probability`` it fails every matching call."""
        if nth is None and probability == 0.0:
            probability = 1.0
        rule = FaultRule(kind=kind, site=site, nth=nth, probability=probability, times=times)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def should_fail(self, kind: str, site: str, what: str) -> bool:
        """should_failslab(): decide whether this allocation fails."""
        if not self.rules:
            return False
        fail = False
        for rule in self.rules:
            if not rule.matches(kind, site, what):
                continue
            rule.calls += 1
            if rule.times >= 0 and rule.injected >= rule.times:
                continue
            if rule.nth is not None:
                hit = rule.calls == rule.nth
            elif rule.probability >= 1.0:
                hit = True
            else:
                hit = self.k.chooser.decide(self.k, f"fault {kind} {site}", rule.probability)
            if hit:
                rule.injected += 1
                fail = True
        if fail:
            self.injected.append(InjectedFault(self.k.steps, kind, site, what))
        return fail
