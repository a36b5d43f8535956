"""Exploration strategies: exhaustive DFS, preemption-bounded DFS, DPOR, random walk, PCT.

All are stateless (CHESS, loom): every schedule re-executes the scenario from its initial
state; a schedule is the list of choices made at its choice points.  The tree strategies keep
a stack of nodes (:class:`TreeNode`; DPOR's :class:`Node`) for the choice points of the
current schedule and advance it to the next branch after each execution, as loom's ``Path``
does.

Work is split into *units* so that ``--jobs N`` gives the same verdicts and counts as one
process: the tree strategies expand the first choice point fully and make each of its options
a unit (DPOR gives option ``i`` the sleep set of the options before it, as a sequential
exploration of that node does); random walks and PCT make a unit of every block of runs, each
run seeded from (seed, run index).  Units are explored independently and merged in order; the
first unit with a violation ends the exploration.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from memcgsim.explore.footprint import Footprint, depends
from memcgsim.explore.runtime import (
    DECIDE,
    RCU_CHANGED,
    RCU_ENTER,
    RCU_QS,
    ChoicePoint,
    FootprintPolicy,
    Outcome,
    Policy,
    Run,
    Scenario,
    Script,
    SleepBlocked,
    execute,
)
from memcgsim.kernel.violations import Violation

__all__ = [
    "STRATEGIES",
    "Config",
    "UnitResult",
    "explore_unit",
    "plan_units",
    "preemptions",
]

STRATEGIES = ("dfs", "bounded", "dpor", "random", "pct")

#: runs per unit of the random and PCT strategies
RUNS_PER_UNIT = 50


@dataclass(frozen=True)
class Config:
    """Every knob of an exploration (loom's ``Builder``), with its default."""

    #: dfs | bounded | dpor | random | pct
    strategy: str = "dpor"
    #: preemption bound of ``bounded``
    bound: int = 2
    #: bug depth ``d`` of ``pct``
    depth: int = 3
    #: runs of ``random`` and ``pct``
    runs: int = 1000
    #: seed of ``random`` and ``pct``
    seed: int = 0
    #: stop after this many schedules (None: explore everything)
    max_schedules: int | None = None
    #: stop at the first violation
    stop_on_violation: bool = True


@dataclass
class UnitResult:
    """What exploring one unit found."""

    schedules: int = 0
    #: executions abandoned because they could only repeat explored ones (DPOR sleep sets)
    blocked: int = 0
    end_states: set[Any] = field(default_factory=set)
    violation: Violation | None = None
    choices: list[int] | None = None
    #: schedules explored in this unit up to and including the violating one
    schedules_to_find: int = 0
    complete: bool = True
    seconds: float = 0.0
    #: leak-scan verdicts by end state (not sent back from worker processes)
    cache: dict[Any, str] = field(default_factory=dict)

    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["cache"] = {}
        return d


def preemptions(points: list[ChoicePoint], choices: list[int]) -> int:
    """Switches away from a task that could have taken the next step."""
    n = 0
    for cp, c in zip(points, choices, strict=False):
        if cp.kind != DECIDE and cp.last is not None and cp.last in cp.options and c != cp.last:
            n += 1
    return n


# ---------------------------------------------------------------------- tree nodes
class Node:
    """One choice point of the current schedule and what remains to explore there."""

    __slots__ = ("backtrack", "chosen", "cp", "done", "fps", "preempt", "sleep", "todo")

    def __init__(self, cp: ChoicePoint, chosen: int, preempt: int = 0) -> None:
        self.cp = cp
        self.chosen = chosen
        #: DFS: options still to explore
        self.todo: list[int] = []
        #: preemptions up to and including this choice
        self.preempt = preempt
        #: DPOR: options explored, options to explore, sleep set on arrival
        self.done: list[int] = [chosen]
        self.backtrack: set[int] = {chosen}
        self.sleep: dict[int, Footprint] = {}
        #: DPOR: the footprint each explored option's step turned out to have
        self.fps: dict[int, Footprint] = {}


def _preempt_after(cp: ChoicePoint, chosen: int, before: int) -> int:
    if cp.kind != DECIDE and cp.last is not None and cp.last in cp.options and chosen != cp.last:
        return before + 1
    return before


class TreeNode:
    """One choice point of the current DFS / bounded-DFS schedule (:class:`Node` without
    DPOR's sets: a tree search makes one per new choice point)."""

    __slots__ = ("chosen", "cp", "preempt", "todo")

    def __init__(self, cp: ChoicePoint, chosen: int, todo: list[int], preempt: int) -> None:
        self.cp = cp
        self.chosen = chosen
        #: options still to explore
        self.todo = todo
        #: preemptions up to and including this choice
        self.preempt = preempt


class _TreePolicy(Policy):
    """DFS and bounded DFS: the non-preemptive continuation first."""

    def __init__(self, bound: int | None, preempt: int) -> None:
        self.bound = bound
        self.preempt = preempt
        self.nodes: list[TreeNode] = []

    def choose(self, run: Run, cp: ChoicePoint) -> int:
        opts = cp.options
        last = cp.last
        rest: list[int]
        if cp.kind != DECIDE and last is not None and last in opts:
            first = last
            if self.bound is not None and self.preempt >= self.bound:
                rest = []
            else:
                rest = [o for o in opts if o != first]
        else:
            first, rest = opts[0], list(opts[1:])
        self.nodes.append(TreeNode(cp, first, rest, self.preempt))
        return first


def _run_tree(sc: Scenario, cfg: Config, mutant: str | None, fixed: tuple[int, ...],
              preempt: int, res: UnitResult, bound: int | None) -> None:
    """DFS below the fixed prefix ``fixed`` (which made ``preempt`` preemptions).

    Each run but the first follows the previous run's scheduling decisions up to the choice
    it changes (the runs are the same up to there): see Kernel.follow_script.
    """
    stack: list[TreeNode] = []
    follow: tuple[Script, int] | None = None
    while True:
        prefix = [*fixed, *(n.chosen for n in stack)]
        pol = _TreePolicy(bound, stack[-1].preempt if stack else preempt)
        out = execute(sc, prefix, pol, mutant=mutant, cache=res.cache, script=True,
                      follow=follow)
        stack.extend(pol.nodes)
        if _account(res, out, cfg):
            return
        while stack and not stack[-1].todo:
            stack.pop()
        if not stack:
            return
        n = stack[-1]
        nxt = n.todo.pop(0)
        before = stack[-2].preempt if len(stack) > 1 else preempt
        n.chosen = nxt
        n.preempt = _preempt_after(n.cp, nxt, before)
        follow = None if out.script is None else (out.script, len(fixed) + len(stack) - 1)


def _account(res: UnitResult, out: Outcome, cfg: Config) -> bool:
    """Count one execution; True when the unit must stop."""
    if out.blocked:
        res.blocked += 1
    else:
        res.schedules += 1
        res.end_states.add(out.fingerprint)
    if out.violation is not None and res.violation is None:
        res.violation = out.violation
        res.choices = list(out.choices)
        res.schedules_to_find = res.schedules
        if cfg.stop_on_violation:
            res.complete = False
            return True
    if cfg.max_schedules is not None and res.schedules >= cfg.max_schedules:
        res.complete = False
        return True
    return False


# ---------------------------------------------------------------------- DPOR
#: every RCU flag (a step not run yet)
_RCU_ALL = RCU_CHANGED | RCU_ENTER | RCU_QS


class _NoHoldPolicy(Policy):
    """The first option, rcu_gp offered at every step (DPOR's view of the schedule)."""

    hold_gp = False


class _DporPolicy(FootprintPolicy):
    """Sleep sets along the run; new choice points prefer the task that ran last.

    A step's footprint is known only once it ran (a resumed task's first access), so the
    sleep set is filtered by each step just before the next choice.
    """

    hold_gp = False

    def __init__(self, stack: list[Node], nchoices_prefix: int, gp_tid: int) -> None:
        self.stack = stack
        self.nprefix = nchoices_prefix
        self.gp_tid = gp_tid
        self.sleep: dict[int, Footprint] = {}
        self.applied = 0
        self.nodes: list[Node] = []

    def _catch_up(self, run: Run, upto: int) -> None:
        while self.applied < upto:
            i = self.applied
            self.applied += 1
            if not self.sleep:
                continue
            tid, acc = run.steps[i]
            fp = Footprint(acc, run.rcu_flags[i], tid == self.gp_tid, run.rcu_alloc)
            self.sleep = {q: f for q, f in self.sleep.items()
                          if q != tid and not depends(f, fp)}

    def choose(self, run: Run, cp: ChoicePoint) -> int:
        self._catch_up(run, len(run.steps))
        awake = [o for o in cp.options if o not in self.sleep] if cp.kind != DECIDE \
            else list(cp.options)
        if not awake:
            raise SleepBlocked()
        # A grace period as early as it can be (see footprint.depends), else the running task.
        gp = self.gp_tid
        chosen = gp if gp in awake else cp.last if cp.last in awake else awake[0]
        n = Node(cp, chosen)
        n.sleep = dict(self.sleep)
        if cp.kind == DECIDE:
            n.backtrack = set(cp.options)
        self.nodes.append(n)
        return chosen

    def on_step(self, run: Run, tid: int, access: Any, choice: int) -> None:
        self._catch_up(run, len(run.steps) - 1)
        if 0 <= choice < self.nprefix:
            node = self.stack[choice]
            sl = dict(node.sleep)
            for d in node.done:
                if d != node.chosen:
                    f = node.fps.get(d)
                    if f is None:
                        # Not run yet: its effect on RCU is unknown, assume every one.
                        f = Footprint(node.cp.accesses[node.cp.options.index(d)], _RCU_ALL,
                                      d == self.gp_tid, run.rcu_alloc)
                    sl[d] = f
            self.sleep = sl


def _dpor_analyse(out: Outcome, stack: list[Node], wild: set[int]) -> None:
    """Flanagan-Godefroid race analysis of one execution, with vector clocks: for each step,
    the latest earlier dependent step of another task that does not happen before it marks a
    race; the racing task (or one that leads to it) is added to the backtrack set of the
    choice point before the earlier step."""
    steps = out.steps
    n = len(steps)
    # footprints; a woken waiter's step reads the location of its task's next access
    fps: list[Footprint] = []
    nxt_access: dict[int, Any] = {}
    accs: list[Any] = [None] * n
    for j in range(n - 1, -1, -1):
        tid, acc = steps[j]
        if acc is None and tid not in wild:
            na = nxt_access.get(tid)
            if na is not None:
                from memcgsim.kernel.task import Access, AccessKind

                acc = Access(na.obj, na.field, AccessKind.READ)
        accs[j] = acc
        if steps[j][1] is not None:
            nxt_access[tid] = steps[j][1]
    flags = out.rcu_flags
    for j in range(n):
        tid = steps[j][0]
        fps.append(Footprint(accs[j], flags[j] if j < len(flags) else 0, tid in wild,
                             out.rcu_alloc))
    # choice index of each step
    step_choice: dict[int, int] = {}
    for ci, node in enumerate(stack):
        if node.cp.kind != DECIDE:
            step_choice[node.cp.step] = ci
            if node.cp.step < n:
                node.fps[node.chosen] = fps[node.cp.step]
    ntasks = max((s[0] for s in steps), default=0) + 1
    cpu_of = {tid: cpu for tid, (_, cpu) in out.tasks.items()}
    clocks: list[list[int]] = []
    last_clock: dict[int, list[int]] = {}
    by_alloc: dict[str, list[int]] = {}
    wild_steps: list[int] = []
    rcu_steps: list[int] = []
    gp_steps: list[int] = []
    for j in range(n):
        p, _ = steps[j]
        f = fps[j]
        prev = last_clock.get(p)
        vc = list(prev) if prev is not None else [0] * ntasks
        if f.wildcard:
            cands: list[int] = list(range(j))
        else:
            cands = by_alloc.get(f.alloc, []) + wild_steps if f.alloc else list(wild_steps)
            if f.gp:
                cands += rcu_steps
            elif f.rcu:
                cands += gp_steps
            cands = sorted(set(cands))
        race: int | None = None
        for i in cands:
            fi = fps[i]
            if not depends(fi, f):
                continue
            vci = clocks[i]
            q = steps[i][0]
            if q != p and (prev is None or vci[q] > prev[q]):
                race = i
            for x in range(ntasks):
                if vci[x] > vc[x]:
                    vc[x] = vci[x]
        vc[p] = (prev[p] if prev is not None else 0) + 1
        clocks.append(vc)
        last_clock[p] = vc
        if f.wildcard:
            wild_steps.append(j)
        else:
            if f.alloc:
                by_alloc.setdefault(f.alloc, []).append(j)
            if f.rcu:
                rcu_steps.append(j)
            if f.gp:
                gp_steps.append(j)
        if race is None:
            continue
        c = step_choice.get(race)
        if c is None or c == 0:
            continue  # not a choice point, or the unit's root (expanded fully)
        node = stack[c]
        opts = node.cp.options
        if p in opts:
            node.backtrack.add(p)
            continue
        pcpu = cpu_of.get(p)
        if pcpu is not None and pcpu == cpu_of.get(steps[race][0]):
            # p waits for the CPU the racing task holds (a task keeps its CPU until it
            # sleeps or returns): p's step can come first only if p runs before that task
            # takes the CPU, at the latest choice before the race that offers p.
            for ci in range(c - 1, 0, -1):
                nd = stack[ci]
                if nd.cp.kind != DECIDE and p in nd.cp.options:
                    nd.backtrack.add(p)
                    break
            continue
        added = False
        for k in range(race + 1, j):
            q = steps[k][0]
            if q in opts and all(clocks[k][x] <= vc[x] for x in range(ntasks)):
                node.backtrack.add(q)
                added = True
                break
        if not added:
            node.backtrack.update(opts)


def _run_dpor(sc: Scenario, cfg: Config, mutant: str | None, root: Node, res: UnitResult,
              wild: set[int]) -> None:
    stack: list[Node] = [root]
    gp = min(wild) if wild else -1
    while True:
        prefix = [x.chosen for x in stack]
        pol = _DporPolicy(stack, len(stack), gp)
        out = execute(sc, prefix, pol, mutant=mutant, record=True, cache=res.cache)
        new = pol.nodes
        stack.extend(new)
        if _account(res, out, cfg):
            return
        _dpor_analyse(out, stack, wild)
        # next: the deepest node with an awake, unexplored backtrack entry
        while len(stack) > 1:
            n = stack[-1]
            cand = sorted(b for b in n.backtrack if b not in n.done and b not in n.sleep)
            if cand:
                n.chosen = cand[0]
                n.done.append(cand[0])
                break
            stack.pop()
        if len(stack) <= 1:
            return


# ---------------------------------------------------------------------- random and PCT
class _RandomPolicy(Policy):
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        # randrange(n) is _randbelow(n) after checking its argument: the same draws
        self.pick_index = rng._randbelow  # type: ignore[attr-defined]

    def choose(self, run: Run, cp: ChoicePoint) -> int:
        return cp.options[self.rng.randrange(len(cp.options))]


class _PctPolicy(Policy):
    """PCT (Burckhardt et al., ASPLOS 2010): random task priorities, the highest-priority
    runnable task runs; at d-1 random steps the running task drops below all others."""

    def __init__(self, rng: random.Random, depth: int, nr_steps: int) -> None:
        self.rng = rng
        self.prio: dict[int, float] = {}
        k = max(nr_steps, 1)
        self.change = {rng.randint(1, k): i for i in range(1, depth)}
        self.depth = depth

    def _p(self, tid: int) -> float:
        p = self.prio.get(tid)
        if p is None:
            p = self.prio[tid] = self.depth + self.rng.random()
        return p

    def choose(self, run: Run, cp: ChoicePoint) -> int:
        if cp.kind == DECIDE:
            return cp.options[self.rng.randrange(2)]
        return max(cp.options, key=self._p)

    def on_step(self, run: Run, tid: int, access: Any, choice: int) -> None:
        i = self.change.get(run.nr_steps + 1)
        if i is not None:
            self.prio[tid] = float(i) - self.rng.random() * 0.5


def _run_random(sc: Scenario, cfg: Config, mutant: str | None, first: int, last: int,
                res: UnitResult, nr_steps: int) -> None:
    for r in range(first, last):
        rng = random.Random(f"{cfg.seed}:{r}")
        pol: Policy
        if cfg.strategy == "pct":
            pol = _PctPolicy(rng, cfg.depth, nr_steps)
        else:
            pol = _RandomPolicy(rng)
        out = execute(sc, (), pol, mutant=mutant, cache=res.cache)
        if _account(res, out, cfg):
            return


# ---------------------------------------------------------------------- units
@dataclass(frozen=True)
class Unit:
    """A piece of the exploration, explorable in any process."""

    index: int
    #: DPOR: the first choice point's option; random/PCT: the first run
    first: int
    #: random/PCT: one past the last run
    last: int = 0
    #: DPOR: options explored before this one at the first choice point
    before: tuple[int, ...] = ()
    #: PCT: the step count estimate k
    nr_steps: int = 0
    #: DFS and bounded: the fixed prefix of choices below which this unit explores
    prefix: tuple[int, ...] = ()
    #: DFS and bounded: the preemptions that prefix made
    preempt: int = 0


def plan_units(sc: Scenario, cfg: Config, mutant: str | None) -> list[Unit]:
    """Split the exploration into units (independent of the number of processes)."""
    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {cfg.strategy!r} (known: {', '.join(STRATEGIES)})")
    if cfg.strategy in ("random", "pct"):
        nr_steps = 0
        if cfg.strategy == "pct":
            nr_steps = execute(sc, (), Policy(), mutant=mutant, fingerprint=False).nr_steps
        return [Unit(i, a, min(a + RUNS_PER_UNIT, cfg.runs), nr_steps=nr_steps)
                for i, a in enumerate(range(0, cfg.runs, RUNS_PER_UNIT))]
    if cfg.strategy in ("dfs", "bounded"):
        return _plan_tree(sc, cfg, mutant)
    out = execute(sc, (), _NoHoldPolicy(), mutant=mutant, fingerprint=False, record=True)
    if not out.new_points:
        return [Unit(0, -1)]
    cp = out.new_points[0]
    opts = list(cp.options)
    if cfg.strategy == "bounded" and cp.kind != DECIDE and cp.last in opts:
        # The non-preemptive continuation first; preemptions only within the bound.
        opts = [cp.last] + ([o for o in opts if o != cp.last] if cfg.bound > 0 else [])
    elif cp.kind != DECIDE and cp.last in opts:
        opts = [cp.last] + [o for o in opts if o != cp.last]
    return [Unit(i, o, before=tuple(opts[:i])) for i, o in enumerate(opts)]


#: DFS and bounded: split the tree into about this many units
SPLIT_UNITS = 200
#: ... expanding no prefix longer than this many choices
SPLIT_DEPTH = 64


def _plan_tree(sc: Scenario, cfg: Config, mutant: str | None) -> list[Unit]:
    """Units of DFS / bounded DFS: subtrees below prefixes of choices, in DFS order.

    The subtree with the most preemptions left is the largest, so the prefix with the fewest
    preemptions (then the shortest) is expanded next, in place, until there are SPLIT_UNITS
    units.  The split depends only on the scenario and the configuration.
    """
    bound = cfg.bound if cfg.strategy == "bounded" else None
    # (prefix, preemptions, no further choice point)
    units: list[tuple[tuple[int, ...], int, bool]] = [((), 0, False)]
    while len(units) < SPLIT_UNITS:
        open_ = [i for i, (p, _, leaf) in enumerate(units) if not leaf and len(p) < SPLIT_DEPTH]
        if not open_:
            break
        i = min(open_, key=lambda j: (units[j][1], len(units[j][0]), j))
        prefix, pre, _ = units[i]
        pol = _TreePolicy(bound, pre)
        execute(sc, prefix, pol, mutant=mutant, fingerprint=False)
        if not pol.nodes:
            units[i] = (prefix, pre, True)
            continue
        n = pol.nodes[0]
        units[i:i + 1] = [((*prefix, o), _preempt_after(n.cp, o, pre), False)
                          for o in [n.chosen, *n.todo]]
    return [Unit(i, 0, prefix=p, preempt=pre) for i, (p, pre, _) in enumerate(units)]


def explore_unit(sc: Scenario, cfg: Config, mutant: str | None, unit: Unit) -> UnitResult:
    """Explore one unit; the result counts only this unit's schedules."""
    t0 = time.perf_counter()
    res = UnitResult()
    if cfg.strategy in ("random", "pct"):
        _run_random(sc, cfg, mutant, unit.first, unit.last, res, unit.nr_steps)
    elif cfg.strategy in ("dfs", "bounded"):
        bound = cfg.bound if cfg.strategy == "bounded" else None
        _run_tree(sc, cfg, mutant, unit.prefix, unit.preempt, res, bound)
    elif unit.first < 0:
        # No choice point at all: one schedule.
        _account(res, execute(sc, (), _NoHoldPolicy(), mutant=mutant), cfg)
    else:
        # The first choice point is replayed in every schedule; rebuild its node.
        first = execute(sc, (), _NoHoldPolicy(), mutant=mutant, fingerprint=False, record=True)
        cp = first.new_points[0]
        root = Node(cp, unit.first, _preempt_after(cp, unit.first, 0))
        root.done = [*unit.before, unit.first]
        wild = {tid for tid, (name, _) in first.tasks.items() if name == "rcu_gp"}
        _run_dpor(sc, cfg, mutant, root, res, wild)
    res.seconds = time.perf_counter() - t0
    return res
