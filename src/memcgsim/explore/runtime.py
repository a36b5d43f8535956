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

import os
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memcgsim.kernel.kernel import Kernel
from memcgsim.kernel.task import Access, AccessKind, Task
from memcgsim.kernel.violations import KernelViolation, Violation, ViolationKind

if TYPE_CHECKING:
    from memcgsim.designs.base import KmemDesign
    from memcgsim.explore.snapshot import Snapshot
    from memcgsim.explore.world import World

__all__ = [
    "ChoicePoint",
    "NondeterminismError",
    "Outcome",
    "Policy",
    "Run",
    "Scenario",
    "Script",
    "SleepBlocked",
    "TaskSpec",
    "execute",
]

#: a choice point that picks a task; its options are task ids
TASK = 0
#: a choice point that resolves a random event; its options are 0 (no) and 1 (yes)
DECIDE = 1

#: a step's effect on RCU (Run.rcu_flags): it changed the RCU signature at all
RCU_CHANGED = 1
#: ... some CPU entered a read-side section it was still in at the step's end
RCU_ENTER = 2
#: ... the current grace period stopped waiting for some CPU (a quiescent state)
RCU_QS = 4


#: enum members as module constants (AccessKind.X is a slow metaclass lookup)
_NONE = AccessKind.NONE


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
    #: ``setup`` keeps no state outside the kernel and the world it returns (no globals, no
    #: random numbers): the explorer may build the initial state once per process and restore
    #: it in place for each run (:mod:`memcgsim.explore.snapshot`)
    snapshot: bool = False


@dataclass(slots=True)
class ChoicePoint:
    """A point where more than one continuation exists."""

    kind: int
    #: task ids (TASK) or outcomes 0/1 (DECIDE), in order
    options: tuple[int, ...]
    #: each option's pending footprint (TASK; None: a woken waiter, footprint unknown);
    #: empty when the run builds no footprints (Kernel.footprints)
    accesses: tuple[Access | None, ...]
    #: the task that took the step before this point (None at the start)
    last: int | None
    #: index of this choice point's step in the run's step sequence
    step: int


def _known(acc: Access | None) -> Access | None:
    """A step's footprint as known when it is chosen: a task that starts or resumes from a
    wait runs through its next access, which is not known yet (None: dependent with all)."""
    if acc is None or acc.kind is _NONE:
        return None
    return acc


class NondeterminismError(RuntimeError):
    """A replayed prefix asked for a choice the execution does not offer."""


#: steps after which a run is taken to be a livelock (a task spinning forever)
MAX_STEPS = 20_000


class Livelock(Exception):
    """A run took more than MAX_STEPS steps."""


class SleepBlocked(Exception):
    """Raised by a policy to abandon a run that can only repeat explored schedules."""


class Policy:
    """What a strategy decides beyond the replayed prefix (default: the first option)."""

    #: offer rcu_gp only where its step does not commute with the previous one
    #: (Run.pick_task); DPOR, whose race analysis places grace-period steps itself, does not
    hold_gp = True

    #: a policy that picks a task by its index among the runnable ones alone, without a
    #: ChoicePoint (the random walk: a run makes thirty such picks); None: use choose()
    pick_index: Callable[[int], int] | None = None

    def choose(self, run: Run, cp: ChoicePoint) -> int:
        return cp.options[0]

    def on_step(self, run: Run, tid: int, access: Access | None, choice: int) -> None:
        """Called as each step is taken (``choice``: its choice index, or -1 if no other
        task could run); DPOR keeps its sleep set here."""


class FootprintPolicy(Policy):
    """A policy whose choices read the pending footprints of the runnable tasks."""


#: the state of a run as a choice point's pick began (Run.pick_task): the scheduling
#: decisions so far (Kernel.script_ops pairs and go-ons since), the steps taken, the task that
#: took the last one and the RCU signature remembered for the rcu_gp hold-back
Mark = tuple[int, int, int, int | None, tuple[Any, ...] | None]


@dataclass(slots=True)
class Script:
    """A run's scheduling decisions, which a later run whose choices start as this run's
    did can follow up to its first different choice (``execute(follow=(script, d))``)."""

    #: Kernel.script_ops: (go-ons, tid switched to) pairs
    ops: list[int]
    #: per choice (all are TASK choices: a run that resolves a random event has no script)
    marks: list[Mark]
    choices: list[int]


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
    #: per recorded step: its RCU flags (RCU_* bits)
    rcu_flags: list[int] = field(default_factory=list)
    #: the allocation id of the RCU state (its accesses' ``obj`` prefix)
    rcu_alloc: str = ""
    #: task id -> (name, cpu)
    tasks: dict[int, tuple[str, int | None]] = field(default_factory=dict)
    #: (step, task id, model location) of each step, when locations were recorded
    locations: list[str] = field(default_factory=list)
    #: the kernel, kept only when asked (replay, swimlanes)
    kernel: Kernel | None = None
    #: the run's decisions, when asked (``execute(script=True)``) and it has them
    script: Script | None = None


class Run:
    """The chooser of one execution: replay ``prefix``, then ask ``policy``."""

    __slots__ = (
        "_sig_prev",
        "_sigma",
        "choices",
        "follow",
        "follow_at",
        "gp_tid",
        "last",
        "marks",
        "new_points",
        "nprefix",
        "nr_steps",
        "observe",
        "policy",
        "prefix",
        "quiet",
        "rcu_alloc",
        "rcu_flags",
        "record",
        "steps",
    )

    def __init__(self, prefix: Sequence[int], policy: Policy, *, record: bool = False,
                 gp_tid: int = -1) -> None:
        #: the rcu_gp kthread, whose steps are offered only where they matter (-1: always)
        self.gp_tid = gp_tid
        self._sigma: tuple[Any, ...] | None = None
        self.prefix = prefix
        self.nprefix = len(prefix)
        self.policy = policy
        #: the policy wants every step (on_step is overridden)
        self.observe = type(policy).on_step is not Policy.on_step
        #: steps where only the running task can go on need not come here
        #: (Kernel.quiet_steps): nothing is recorded or observed per step
        self.quiet = not record and not self.observe
        self.choices: list[int] = []
        self.new_points: list[ChoicePoint] = []
        self.record = record
        self.steps: list[tuple[int, Access | None]] = []
        #: per recorded step: how it changed the RCU signature (RCU_* bits), which decides
        #: whether it commutes with rcu_gp's steps (explore/footprint.py)
        self.rcu_flags: list[int] = []
        #: the RCU state's allocation id (set by execute())
        self.rcu_alloc = ""
        self._sig_prev: tuple[Any, ...] | None = None
        self.nr_steps = 0
        self.last: int | None = None
        #: each choice's Mark, when the run's Script is kept (None: it is not)
        self.marks: list[Mark] | None = None
        #: the script this run follows up to its choice ``follow_at`` (Kernel.follow_script)
        self.follow: Script | None = None
        self.follow_at = 0

    def follow_end(self) -> None:
        """The kernel followed ``follow``'s decisions up to the pick of choice ``follow_at``:
        take the state the run had there (the choices, steps, last task and remembered RCU
        signature that following skipped), as if each of those picks had been made."""
        script = self.follow
        assert script is not None
        d = self.follow_at
        _, _, self.nr_steps, self.last, self._sigma = script.marks[d]
        self.choices = script.choices[:d]
        if self.marks is not None:
            self.marks = script.marks[:d]

    @staticmethod
    def _rcu_signature(k: Kernel) -> tuple[Any, ...]:
        """What rcu_gp's steps read: each CPU's read-side state (rcu_read_lock nesting,
        preemption or interrupts disabled, one bit per CPU) and how often it left it, the
        requested and completed grace-period numbers, the callbacks queued, the CPUs the
        current grace period still waits for."""
        rcu = k.rcu
        r = 0
        for c in k.cpus:
            r = r + r + (c.rcu_nesting > 0 or c.preempt_count > 0 or c.irqs_disabled)
        return (r, rcu.need_seq, rcu.gp_seq, rcu.nr_enqueued, len(rcu.gp_waiting),
                tuple([c.rcu_exits for c in k.cpus]))

    @staticmethod
    def _rcu_effect(prev: tuple[Any, ...] | None, sig: tuple[Any, ...]) -> int:
        """A step's RCU flags from the signatures before and after it (RCU_* bits)."""
        if prev is None or prev == sig:
            return 0
        flags = RCU_CHANGED
        ex0, ex1 = prev[5], sig[5]
        n = len(ex1)
        left = 0
        for i in range(n):
            if ex0[i] != ex1[i]:
                left |= 1 << (n - 1 - i)
        # A CPU that is a reader after the step and was not before it, or left its
        # section and entered a new one within the step: a grace period starting before
        # the step would not wait for that section, one starting after it would.
        if sig[0] & (~prev[0] | left):
            flags |= RCU_ENTER
        if sig[4] < prev[4]:
            flags |= RCU_QS
        return flags

    def _fold_quiet(self, k: Kernel) -> None:
        """Count the steps the running task took alone since the last call (each with one
        runnable task: the RCU signature comparison starts over, as after any such step)."""
        q = k.quiet_steps
        if q:
            k.quiet_steps = 0
            self.nr_steps += q
            self._sigma = None

    def finish(self, k: Kernel) -> None:
        """Close the record of the last step (its effect on the RCU signature)."""
        self._fold_quiet(k)
        if self.record and self.steps:
            self.rcu_flags[-1] = self._rcu_effect(self._sig_prev, self._rcu_signature(k))

    def pick_task(self, k: Kernel, runnable: list[Task]) -> Task:
        """Choose the next step's task: replay the prefix, else ask the policy.

        The grace-period kthread is offered only where its step does not commute with the
        previous one.  rcu_gp's steps read the RCU signature (:meth:`_rcu_signature`) and
        write the grace-period state; a step that leaves the signature unchanged commutes
        with a grace-period step, so running rcu_gp right after it is equivalent to running
        it right before it.  rcu_gp is therefore offered only when it took the previous
        step, that step changed the signature, or it just became runnable; the equivalent
        schedule has no more preemptions, so bounded search keeps its coverage.
        """
        if k.quiet_steps:
            self._fold_quiet(k)
        sigma0 = self._sigma
        choice = -1
        record = self.record
        sig = None
        if record:
            sig = self._rcu_signature(k)
            if self.steps:
                self.rcu_flags[-1] = self._rcu_effect(self._sig_prev, sig)
            self._sig_prev = sig
        if len(runnable) == 1:
            # The common case: no choice (no other task can run).
            self._sigma = None
            t = runnable[0]
        else:
            gp = self.gp_tid
            for x in runnable:
                if x.tid == gp:
                    if sig is None:
                        # _rcu_signature(k), inlined (most steps of a run with a grace
                        # period in flight come here)
                        rcu = k.rcu
                        r = 0
                        e = 0
                        for c in k.cpus:
                            r = r + r + (c.rcu_nesting > 0 or c.preempt_count > 0
                                         or c.irqs_disabled)
                            e += c.rcu_exits
                        sig = (r, rcu.need_seq, rcu.gp_seq, rcu.nr_enqueued,
                               len(rcu.gp_waiting), e)
                    prev = self._sigma
                    self._sigma = sig
                    if prev is not None and prev == sig and self.last != gp:
                        # (rcu_gp, the first task spawned, is usually first)
                        runnable = (runnable[1:] if runnable[0] is x
                                    else [y for y in runnable if y is not x])
                    break
            else:
                self._sigma = None
            if len(runnable) == 1:
                t = runnable[0]
            else:
                choice = len(self.choices)
                if choice < self.nprefix:
                    # Replaying (inlined: most choices of a tree search are replayed).
                    tid = self.prefix[choice]
                    for t in runnable:
                        if t.tid == tid:
                            break
                    else:
                        t = self._choose(k, runnable)
                else:
                    t = self._choose(k, runnable)
                self.choices.append(t.tid)
                if self.marks is not None:
                    self.marks.append((len(k.script_ops), k.script_cont, self.nr_steps,
                                       self.last, sigma0))
        nr = self.nr_steps
        if nr >= MAX_STEPS:
            raise Livelock()
        if record or self.observe:
            acc = t.pending
            if acc is not None and acc.kind is _NONE:
                acc = None
            if record:
                self.steps.append((t.tid, acc))
                self.rcu_flags.append(0)
            self.policy.on_step(self, t.tid, acc, choice)
        self.last = t.tid
        self.nr_steps = nr + 1
        if self.quiet:
            # The running task is t from now until the next call: quiet steps are t's, and
            # the livelock check stays exact.
            k.quiet_budget = MAX_STEPS - nr - 1
        return t

    def _choose(self, k: Kernel, runnable: list[Task]) -> Task:
        """A choice point between the runnable tasks: the prefix's choice, else the policy's."""
        i = len(self.choices)
        if i < len(self.prefix):
            tid = self.prefix[i]
            for t in runnable:
                if t.tid == tid:
                    return t
            raise NondeterminismError(
                f"choice {i}: task {tid} is not runnable "
                f"(runnable: {[x.tid for x in runnable]})")
        pick = self.policy.pick_index
        if pick is not None:
            return runnable[pick(len(runnable))]
        accs = tuple([_known(x.pending) for x in runnable]) if k.footprints else ()
        cp = ChoicePoint(TASK, tuple([x.tid for x in runnable]), accs, self.last,
                         self.nr_steps)
        self.new_points.append(cp)
        tid = self.policy.choose(self, cp)
        for t in runnable:
            if t.tid == tid:
                return t
        raise AssertionError(f"policy chose task {tid}, not runnable")

    def fused(self, t: Task, acc: Access) -> None:
        """Kernel.on_fused: the step just taken by a resumed task performed ``acc``."""
        if self.record and self.steps and self.steps[-1][0] == t.tid:
            self.steps[-1] = (t.tid, acc)

    def decide(self, k: Kernel, what: str, probability: float) -> bool:
        self._fold_quiet(k)
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
        # (Marks are kept for task choices only: this run's decisions are not followed.)
        self.marks = None
        return bool(v)


def make_design(mutant: str | None) -> KmemDesign:
    """The seed's design, or the mutant of that name."""
    if mutant is None:
        from memcgsim.designs.memcg_ptr import MemcgPtrDesign

        return MemcgPtrDesign()
    from memcgsim.explore.mutants import MUTANTS

    return MUTANTS[mutant]()


def _initial_state(scenario: Scenario, mutant: str | None, keep_kernel: bool
                   ) -> tuple[Kernel, World]:
    k = Kernel(nr_cpus=scenario.nr_cpus, boot=False, log_events=keep_kernel)
    k.design = make_design(mutant)
    w = scenario.setup(k)
    # The kthreads' first steps (to their idle waits) and whatever the setup queued run
    # before the race, sequentially: their order is not part of the schedule.
    k.run()
    # The racing tasks, not started yet (spawning reads none of the explorer's settings).
    for spec in scenario.tasks:
        k.spawn(spec.fn, w, name=spec.name, cpu=spec.cpu)
    return k, w


#: (id(scenario), mutant, thread) -> (scenario, its initial state's snapshot, None if it has
#: none); the scenario is kept, so its id cannot be reused while it is a key
_SNAPSHOTS: dict[tuple[int, str | None, int], tuple[Scenario, Snapshot | None]] = {}


def _snapshot(scenario: Scenario, mutant: str | None) -> Snapshot | None:
    """``scenario``'s initial state under ``mutant``, restored from its snapshot (made on
    first use, one per thread) and marked in use until the run is unwound; None if the state
    has no snapshot."""
    key = (id(scenario), mutant, threading.get_ident())
    hit = _SNAPSHOTS.get(key)
    if hit is not None and hit[0] is scenario:
        snap = hit[1]
        if snap is None:
            return None
        if not snap.in_use:
            snap.restore()
            snap.in_use = True
            return snap
        # An exception escaped the run that used it, whose tasks were never unwound: the
        # kernel is not reused.
    from memcgsim.explore.snapshot import take

    k, w = _initial_state(scenario, mutant, False)
    snap = take(k, w)
    _SNAPSHOTS[key] = (scenario, snap)
    if snap is not None:
        snap.in_use = True
    return snap


def _forget_snapshots() -> None:
    """In a forked child, build the initial states anew (they hold the parent's kernels)."""
    _SNAPSHOTS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_snapshots)


def execute(scenario: Scenario, prefix: Sequence[int] = (), policy: Policy | None = None, *,
            mutant: str | None = None, record: bool = False, locations: bool = False,
            keep_kernel: bool = False, fingerprint: bool = True,
            cache: dict[Any, str] | None = None, script: bool = False,
            follow: tuple[Script, int] | None = None) -> Outcome:
    """Run ``scenario`` once from its initial state under the given choices.

    ``script``: keep the run's scheduling decisions (``Outcome.script``; not with ``record``,
    ``locations`` or a policy that observes steps).  ``follow = (script, d)``: ``prefix``
    starts with that script's first ``d`` choices; take the decisions up to choice ``d`` from
    it instead of computing them (the same run, faster).
    """
    snap = _snapshot(scenario, mutant) if scenario.snapshot and not keep_kernel else None
    if snap is not None:
        k, w = snap.kernel, snap.world
    else:
        k, w = _initial_state(scenario, mutant, keep_kernel)
    gp = next((t.tid for t in k.tasks if t.name == "rcu_gp"), -1)
    policy = policy or Policy()
    run = Run(prefix, policy, record=record, gp_tid=gp if policy.hold_gp else -1)
    run.rcu_alloc = str(k.rcu._kowner._koid)
    if script or follow is not None:
        if not run.quiet or locations:
            raise ValueError("schedule scripts need a run that records and observes no steps")
        k.script_ops = []
        if script:
            run.marks = []
        if follow is not None:
            sc, d = follow
            if list(prefix[:d]) != sc.choices[:d] or d >= len(sc.marks):
                raise ValueError(f"the prefix does not start with the script's {d} choices")
            run.follow, run.follow_at = follow
            npairs2, cont = sc.marks[d][:2]
            k.follow_script(sc.ops, npairs2 // 2, cont, run.follow_end)
    w.leak_cache = cache
    k.quiescent_checks.append(w.check)
    k.chooser = run
    k.preemptive = True
    k.observe_steps = True
    k.fuse_resume = True
    k.on_fused = run.fused
    k.footprints = record or locations or isinstance(policy, FootprintPolicy)
    k.inline_schedule = True
    k.record_steps = locations
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
        tb = traceback.extract_tb(e.__traceback__)
        where = " < ".join(f"{f.name}:{f.lineno}" for f in reversed(tb[-3:]))
        violation = Violation(ViolationKind.ASSERTION, str(e) or "assertion failed",
                              task=t.name if t else "", step=k.steps, location=where)
    except SleepBlocked:
        blocked = True
    except Livelock:
        violation = Violation(ViolationKind.DEADLOCK,
                              f"livelock: no quiescence after {MAX_STEPS} steps",
                              step=k.steps)
    run.finish(k)
    out = Outcome(choices=run.choices, nr_steps=run.nr_steps, violation=violation,
                  blocked=blocked, steps=run.steps, new_points=run.new_points,
                  rcu_flags=run.rcu_flags, rcu_alloc=run.rcu_alloc)
    if run.marks is not None:
        out.script = Script(k.script_ops, run.marks, run.choices)
    if fingerprint and not blocked:
        out.fingerprint = (None if violation is None else (str(violation.kind),),
                           w.end_fingerprint())
    if record or locations or keep_kernel:
        out.tasks = {t.tid: (t.name, t.cpu) for t in k.tasks}
    if locations:
        out.locations = [acc.location if acc is not None else ""
                         for _, acc in k.schedule_log]
    if keep_kernel:
        out.kernel = k
    else:
        _discard(k)
        if snap is not None:
            snap.in_use = False
    return out


def _discard(k: Kernel) -> None:
    """Unwind the run's unfinished tasks, so that the world can be freed."""
    k.kill_tasks()
