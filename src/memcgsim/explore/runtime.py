"""One execution of a scenario under the explorer's control (loom's ``rt/execution``).

Every source of nondeterminism goes through one chooser, :class:`Run`: which runnable task
takes the next step (``pick_task``, asked at *every* step so that the run's full step sequence
is known) and how a random event turns out (``decide``).  A run replays a recorded prefix of
choices exactly and asks a :class:`Policy` (the strategy) for every choice beyond it; the list
of choices it made *is* the schedule: saved, it replays the execution step for step.

Since tasks are pinned to CPUs and the model's kernel is not preemptible (a task keeps its CPU
until it sleeps or returns), the runnable set at each step holds at most one task per CPU plus
unbound kthreads (rcu_gp): the choices are the interleavings of CPUs, grace-period steps and
callback and work invocations, within the kernel's rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memcgsim.kernel.kernel import Kernel
from memcgsim.kernel.task import Access, Task
from memcgsim.kernel.violations import KernelViolation, Violation, ViolationKind

if TYPE_CHECKING:
    from memcgsim.designs.base import KmemDesign
    from memcgsim.explore.world import World

__all__ = [
    "ChoicePoint",
    "NondeterminismError",
    "Outcome",
    "Policy",
    "Run",
    "Scenario",
    "SleepBlocked",
    "TaskSpec",
    "execute",
]

#: a choice point that picks a task; its options are task ids
TASK = 0
#: a choice point that resolves a random event; its options are 0 (no) and 1 (yes)
DECIDE = 1


@dataclass(frozen=True)
class TaskSpec:
    """One task of a scenario: ``fn(k, world)`` runs on simulated CPU ``cpu``."""

    name: str
    cpu: int
    fn: Callable[[Kernel, World], Any]


@dataclass(frozen=True)
class Scenario:
    """A race to explore: an initial state, the racing tasks, and final assertions.

    ``setup(k)`` builds the initial state sequentially (no choices) and returns the
    :class:`~memcgsim.explore.world.World`; ``tasks`` then run concurrently, each on its CPU,
    together with the RCU kthreads; once nothing can run, the checkers run, then
    ``check(k, world)`` (raise AssertionError or call ``k.report`` to flag a violation).
    """

    name: str
    setup: Callable[[Kernel], World]
    tasks: tuple[TaskSpec, ...]
    check: Callable[[Kernel, World], None] | None = None
    description: str = ""
    nr_cpus: int = 2
    #: where it comes from: ``"builtin"`` or the path of the scenario file
    source: str = "builtin"


@dataclass(slots=True)
class ChoicePoint:
    """A point where more than one continuation exists."""

    kind: int
    #: task ids (TASK) or outcomes 0/1 (DECIDE), in order
    options: tuple[int, ...]
    #: each option's pending footprint (TASK; None: a woken waiter, footprint unknown)
    accesses: tuple[Access | None, ...]
    #: the task that took the step before this point (None at the start)
    last: int | None
    #: index of this choice point's step in the run's step sequence
    step: int


class NondeterminismError(RuntimeError):
    """A replayed prefix asked for a choice the execution does not offer."""


class SleepBlocked(Exception):
    """Raised by a policy to abandon a run that can only repeat explored schedules."""


class Policy:
    """What a strategy decides beyond the replayed prefix (default: the first option)."""

    def choose(self, run: Run, cp: ChoicePoint) -> int:
        return cp.options[0]

    def on_step(self, run: Run, tid: int, access: Access | None, choice: int) -> None:
        """Called as each step is taken (``choice``: its choice index, or -1 if no other
        task could run); DPOR keeps its sleep set here."""


@dataclass
class Outcome:
    """What one execution did."""

    choices: list[int]
    nr_steps: int
    violation: Violation | None
    #: abandoned by the strategy (sleep-set blocked): not a complete schedule
    blocked: bool = False
    fingerprint: Any = None
    #: (tid, footprint) of every step, when recorded
    steps: list[tuple[int, Access | None]] = field(default_factory=list)
    #: choice points beyond the replayed prefix
    new_points: list[ChoicePoint] = field(default_factory=list)
    #: task id -> (name, cpu)
    tasks: dict[int, tuple[str, int | None]] = field(default_factory=dict)
    #: (step, task id, model location) of each step, when locations were recorded
    locations: list[str] = field(default_factory=list)
    #: the kernel, kept only when asked (replay, swimlanes)
    kernel: Kernel | None = None


class Run:
    """The chooser of one execution: replay ``prefix``, then ask ``policy``."""

    __slots__ = ("choices", "last", "new_points", "nr_steps", "policy", "prefix",
                 "record", "steps")

    def __init__(self, prefix: Sequence[int], policy: Policy, *, record: bool = False) -> None:
        self.prefix = prefix
        self.policy = policy
        self.choices: list[int] = []
        self.new_points: list[ChoicePoint] = []
        self.record = record
        self.steps: list[tuple[int, Access | None]] = []
        self.nr_steps = 0
        self.last: int | None = None

    def pick_task(self, k: Kernel, runnable: list[Task]) -> Task:
        choice = -1
        if len(runnable) == 1:
            t = runnable[0]
        else:
            i = len(self.choices)
            if i < len(self.prefix):
                tid = self.prefix[i]
                for t in runnable:
                    if t.tid == tid:
                        break
                else:
                    raise NondeterminismError(
                        f"choice {i}: task {tid} is not runnable "
                        f"(runnable: {[x.tid for x in runnable]})")
            else:
                cp = ChoicePoint(TASK, tuple(x.tid for x in runnable),
                                 tuple(x.pending for x in runnable), self.last, self.nr_steps)
                self.new_points.append(cp)
                tid = self.policy.choose(self, cp)
                for t in runnable:
                    if t.tid == tid:
                        break
                else:
                    raise AssertionError(f"policy chose task {tid}, not runnable")
            choice = len(self.choices)
            self.choices.append(t.tid)
        if self.record:
            self.steps.append((t.tid, t.pending))
        self.policy.on_step(self, t.tid, t.pending, choice)
        self.last = t.tid
        self.nr_steps += 1
        return t

    def decide(self, k: Kernel, what: str, probability: float) -> bool:
        if probability <= 0.0:
            return False
        if probability >= 1.0:
            return True
        i = len(self.choices)
        if i < len(self.prefix):
            v = self.prefix[i]
            if v not in (0, 1):
                raise NondeterminismError(f"choice {i}: {v} is not an outcome of {what}")
        else:
            cp = ChoicePoint(DECIDE, (0, 1), (None, None), self.last, self.nr_steps)
            self.new_points.append(cp)
            v = self.policy.choose(self, cp)
        self.choices.append(v)
        return bool(v)


def make_design(mutant: str | None) -> KmemDesign:
    """The seed's design, or the mutant of that name."""
    if mutant is None:
        from memcgsim.designs.memcg_ptr import MemcgPtrDesign

        return MemcgPtrDesign()
    from memcgsim.explore.mutants import MUTANTS

    return MUTANTS[mutant]()


def execute(scenario: Scenario, prefix: Sequence[int] = (), policy: Policy | None = None, *,
            mutant: str | None = None, record: bool = False, locations: bool = False,
            keep_kernel: bool = False, fingerprint: bool = True) -> Outcome:
    """Run ``scenario`` once from its initial state under the given choices."""
    run = Run(prefix, policy or Policy(), record=record)
    k = Kernel(nr_cpus=scenario.nr_cpus, boot=False, log_events=keep_kernel)
    k.design = make_design(mutant)
    w = scenario.setup(k)
    # The kthreads' first steps (to their idle waits) and whatever the setup queued run
    # before the race, sequentially: their order is not part of the schedule.
    k.run()
    k.quiescent_checks.append(w.check)
    k.chooser = run
    k.preemptive = True
    k.observe_steps = True
    k.record_steps = locations
    for spec in scenario.tasks:
        k.spawn(spec.fn, w, name=spec.name, cpu=spec.cpu)
    violation: Violation | None = None
    blocked = False
    try:
        k.run()
        if scenario.check is not None:
            scenario.check(k, w)
    except KernelViolation as e:
        violation = e.violation
    except AssertionError as e:
        t = k.current
        violation = Violation(ViolationKind.ASSERTION, str(e) or "assertion failed",
                              task=t.name if t else "", step=k.steps,
                              location=k.location(2, frames=8))
    except SleepBlocked:
        blocked = True
    out = Outcome(choices=run.choices, nr_steps=run.nr_steps, violation=violation,
                  blocked=blocked, steps=run.steps, new_points=run.new_points)
    if fingerprint and not blocked:
        out.fingerprint = (None if violation is None else (str(violation.kind),),
                           w.fingerprint())
    if record or locations or keep_kernel:
        out.tasks = {t.tid: (t.name, t.cpu) for t in k.tasks}
    if locations:
        out.locations = [acc.location if acc is not None else ""
                         for _, acc in k.schedule_log]
    if keep_kernel:
        out.kernel = k
    _discard(k)
    return out


def _discard(k: Kernel) -> None:
    """Drop the run's tasks; their suspended coroutines are collected with the kernel."""
    k.current = None
