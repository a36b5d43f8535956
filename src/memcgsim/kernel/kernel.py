"""The Kernel: one run's whole world, its scheduler, and the access API model code uses.

Model code is ordinary Python written like the kernel's C.  Each access to shared state goes
through :meth:`Kernel.load`, :meth:`Kernel.store`, :meth:`Kernel.xchg`, :meth:`Kernel.rmw` or
:meth:`Kernel.access`: a *scheduling point* that declares the object, the member and whether it
reads or writes, checks the object's shadow state (KASAN), and, when the kernel runs
preemptively (under the explorer), hands control to the scheduler first.  Tasks are stackful
coroutines (greenlets), so the same functions serve sequential runs, where a task runs until it
waits, and exploration, where every point is a choice.
"""

from __future__ import annotations

import functools
import heapq
import os
import random
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from greenlet import GreenletExit, greenlet

from memcgsim.kernel.objects import UNINIT, KObject, KState
from memcgsim.kernel.task import CPU, Access, AccessKind, Context, Task, TaskState
from memcgsim.kernel.violations import KernelViolation, Violation, ViolationKind

if TYPE_CHECKING:
    from memcgsim.cgroup.cgroup import Cgroup, CgroupGlobals
    from memcgsim.designs.base import KmemDesign
    from memcgsim.kernel.fault import FaultInjector
    from memcgsim.kernel.heap import Heap
    from memcgsim.kernel.locking import Lockdep
    from memcgsim.kernel.rcu import RcuState
    from memcgsim.kernel.workqueue import WorkqueueState
    from memcgsim.mm.memcontrol import MemcgGlobals, MemCgroup
    from memcgsim.mm.slab_common import SlabGlobals
    from memcgsim.mm.vmscan import VmscanGlobals

__all__ = [
    "Chooser",
    "Event",
    "Kernel",
    "KernelConfig",
    "SequentialChooser",
]

T = TypeVar("T")

_RUNNABLE = TaskState.RUNNABLE
_WAITING = TaskState.WAITING

#: the footprint of every point when footprints are off (Kernel.footprints)
_ANONYMOUS = Access("?", "?", AccessKind.WRITE, "")

#: frames in these files are the runtime, not model code, and are left out of locations
_RUNTIME_FILES = frozenset({__file__})


#: enum members as module constants (AccessKind.X is a slow metaclass lookup)
_READ = AccessKind.READ
_WRITE = AccessKind.WRITE
_RMW = AccessKind.RMW
_NONE = AccessKind.NONE
_SOFTIRQ = Context.SOFTIRQ


def capture_frames(depth: int = 1, frames: int = 3) -> list[tuple[Any, int]]:
    """(code, last instruction) of the frame ``depth`` up from this call (1: its caller) and
    of its callers, skipping the runtime's own frames: cheap to take, formatted by
    :func:`format_frames` only if a report needs it (line numbers are looked up then)."""
    try:
        f = sys._getframe(depth)
    except ValueError:
        return []
    out: list[tuple[Any, int]] = []
    while f is not None and len(out) < frames:
        co = f.f_code
        if co.co_filename not in _RUNTIME_FILES:
            out.append((co, f.f_lasti))
        f = f.f_back  # type: ignore[assignment]
    return out


def format_frames(frames: list[tuple[Any, int]]) -> str:
    """``func:line < caller:line ...`` of captured frames (as ``frame.f_lineno`` reads)."""
    parts = []
    for co, lasti in frames:
        line = next((ln for start, end, ln in co.co_lines() if start <= lasti < end), None)
        parts.append(f"{co.co_name}:{line}")
    return " < ".join(parts)


class _Killed(BaseException):
    """Unwinds a task whose world is thrown away (Kernel.kill_tasks)."""


#: what the scheduler sends a suspended task to unwind it (cheaper than greenlet.throw())
_KILL = object()

#: parked coroutines kept per thread (more finish for good)
_POOL_MAX = 64
_pools = threading.local()
#: pools of threads of a parent process (after fork): never switched to again, never freed
_stale: list[Any] = []


def _pool() -> list[greenlet]:
    """This thread's idle task coroutines.

    Tasks run on reused greenlets: on CPython 3.11 starting a fresh greenlet allocates its
    frame stack and ending one frees it, about 8 µs per task (more than a whole explored
    step); a parked greenlet keeps its stack.
    """
    try:
        return _pools.pool  # type: ignore[no-any-return]
    except AttributeError:
        pool: list[greenlet] = []
        _pools.pool = pool
        return pool


def _forget_pools() -> None:
    """In a forked child, leave the parent's parked coroutines alone."""
    global _pools
    _stale.append(_pools)
    _pools = threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def _worker(job: Callable[[], greenlet]) -> None:
    """A pooled coroutine: run a task body, park, run the next one it is sent."""
    me = greenlet.getcurrent()
    pool = _pool()
    while True:
        sched = job()
        job = None  # type: ignore[assignment]  # (the finished body holds its world)
        if len(pool) >= _POOL_MAX:
            return
        pool.append(me)
        job = sched.switch()


@dataclass(frozen=True)
class KernelConfig:
    """Every knob of a run, with the kernel's defaults where the kernel has one."""

    #: number of simulated CPUs (nr_cpu_ids)
    nr_cpus: int = 2
    #: seeds every random choice the run makes (fault probabilities, workloads)
    seed: int = 0
    #: raise KernelViolation at the first report (panic_on_warn); else only record it
    panic_on_violation: bool = True
    #: keep the lifecycle event log (`Kernel.events`)
    log_events: bool = True
    #: CONFIG_DEBUG_LIST: validate list_add/list_del
    debug_list: bool = True
    #: PAGE_SIZE
    page_size: int = 4096
    #: MEMCG_CACHES_MAX_SIZE: size of the kmemcg id space (ida range)
    kmemcg_id_max: int = 65535
    #: MEM_CGROUP_ID_MAX: size of the memcg id space (idr range 1..max-1)
    mem_cgroup_id_max: int = 65535
    #: MEMCG_CHARGE_BATCH: per-cpu vmstat delta flushed once it exceeds this (pages)
    memcg_charge_batch: int = 32
    #: start_kernel(): create the root cgroup, root memcg and kthreads at construction
    boot: bool = True
    #: cgroup_memory_nokmem ("cgroup.memory=nokmem")
    nokmem: bool = False
    #: the kernel-memory accounting design (memcgsim.designs), by name
    design: str = "memcg-ptr"
    #: controllers enabled in the root's cgroup.subtree_control at boot (as systemd does)
    root_subtree_control: tuple[str, ...] = ("memory",)
    #: at every quiescent point, check css/ptr refcounts and memory.current conservation
    check_at_quiescence: bool = True


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the lifecycle log: what happened, when, and in which task."""

    step: int
    clock_ns: int
    task: str
    what: str
    detail: str

    def __str__(self) -> str:
        return f"{self.step:>8} {self.clock_ns:>12} {self.task:<14} {self.what} {self.detail}".rstrip()


_DEFAULT_CONFIG = KernelConfig()

#: (id(base config), overrides) -> (base config, result); the base is kept, so its id
#: cannot be reused while it is a key
_CONFIGS: dict[tuple[int, tuple[tuple[str, Any], ...]], tuple[KernelConfig, KernelConfig]] = {}


def _configure(cfg: KernelConfig, overrides: dict[str, Any]) -> KernelConfig:
    """``cfg`` with ``overrides``; the explorer builds a kernel per schedule, so the
    (hashable) results are remembered."""
    key = (id(cfg), tuple(sorted(overrides.items())))
    try:
        hit = _CONFIGS.get(key)
    except TypeError:  # an unhashable value
        key, hit = None, None  # type: ignore[assignment]
    if hit is not None and hit[0] is cfg:
        return hit[1]
    unknown = sorted(set(overrides) - set(KernelConfig.__dataclass_fields__))
    if unknown:
        known = ", ".join(sorted(KernelConfig.__dataclass_fields__))
        raise ValueError(f"unknown Kernel option {unknown[0]!r} (known: {known})")
    new = replace(cfg, **overrides)
    if key is not None and len(_CONFIGS) < 256:
        _CONFIGS[key] = (cfg, new)
    return new


class Chooser(Protocol):
    """The one place a run's nondeterminism is resolved; the explorer substitutes its own."""

    def pick_task(self, k: Kernel, runnable: list[Task]) -> Task:
        """Choose which runnable task performs the next step."""
        ...

    def decide(self, k: Kernel, what: str, probability: float) -> bool:
        """Resolve a random event (an injected fault with a probability)."""
        ...


class SequentialChooser:
    """Deterministic, non-preemptive: the lowest-numbered runnable task runs (kthreads first)."""

    def pick_task(self, k: Kernel, runnable: list[Task]) -> Task:
        return runnable[0]

    def decide(self, k: Kernel, what: str, probability: float) -> bool:
        return k.rng.random() < probability


class Kernel:
    """One simulated machine: CPUs, tasks, clock, heap, RCU, workqueues and the cgroup tree.

    >>> k = Kernel(nr_cpus=2, seed=1)
    >>> k.nr_cpus
    2
    """

    # Subsystem state, attached by the modules that own it.
    heap: Heap
    rcu: RcuState
    wq: WorkqueueState
    lockdep: Lockdep
    faults: FaultInjector
    cgroup: CgroupGlobals
    memcg: MemcgGlobals
    design: KmemDesign
    slab: SlabGlobals
    vmscan: VmscanGlobals

    def __init__(
        self, nr_cpus: int | None = None, seed: int | None = None, *,
        config: KernelConfig | None = None, **overrides: Any,
    ) -> None:
        cfg = config or _DEFAULT_CONFIG
        if nr_cpus is not None:
            overrides["nr_cpus"] = nr_cpus
        if seed is not None:
            overrides["seed"] = seed
        if overrides:
            cfg = _configure(cfg, overrides)
        if cfg.nr_cpus < 1:
            raise ValueError(f"nr_cpus must be at least 1, not {cfg.nr_cpus}")
        self.config = cfg
        #: the lifecycle log is kept (config.log_events); hot call sites test this before
        #: formatting an event's details
        self.tracing = cfg.log_events
        self.nr_cpus = cfg.nr_cpus
        self.seed = cfg.seed
        self.page_size = cfg.page_size

        #: scheduling points taken since boot
        self.steps = 0
        #: simulated time
        self.clock_ns = 0
        self.cpus = [CPU(i) for i in range(cfg.nr_cpus)]
        self.tasks: list[Task] = []
        self._active: list[Task] = []
        self._timers: list[tuple[int, int]] = []
        #: CPU 0 outside any task; kept in step with ``current`` (see its setter)
        self.this_cpu: CPU = self.cpus[0]
        self._current: Task | None = None
        #: every scheduling point is a choice (set by the explorer)
        self.preemptive = False
        #: record each step's footprint in `schedule_log` (set by the explorer)
        self.record_steps = False
        self.schedule_log: list[tuple[int, Access | None]] = []
        #: ask the chooser at every step, even when one task can run (the explorer's view)
        self.observe_steps = False
        #: steps the running task took alone without asking the chooser (see _point), and
        #: how many more it may take so (the chooser sets it; 0: ask at every step)
        self.quiet_steps = 0
        self.quiet_budget = 0
        #: a task resumed from a wait (or started) runs through its first scheduling point
        #: in the same step: the code in between touches no shared state, so stopping there
        #: would only double the choices (the explorer sets this)
        self.fuse_resume = False
        #: called with (task, access) when a resumed task performs its first access
        self.on_fused: Callable[[Task, Access], None] | None = None
        self._resumed: Task | None = None
        #: build each point's footprint (Access); the explorer turns this off when its
        #: strategy does not read footprints, saving the string formatting per point
        self.footprints = True
        #: choose the next step at the point itself, and let the running task go on without
        #: two coroutine switches when it is chosen again (the explorer's runs, which have
        #: neither ``until`` nor ``max_steps``)
        self.inline_schedule = False
        self._chosen: Task | None = None
        #: the scheduling decisions of this run (inline_schedule): at each point or scheduler
        #: pass that computes the runnable set, the running task goes on or another task is
        #: switched to; recorded as pairs (go-ons before the switch, tid switched to), with the
        #: go-ons since the last switch in ``script_cont`` (see follow_script)
        self.script_ops: list[int] = []
        self.script_cont = 0
        #: following a previous run's decisions (follow_script): its pairs, how many of them
        #: to follow, the next pair, go-ons left before the next switch, go-ons after the last
        self._script: list[int] | None = None
        self._slen = 0
        self._spos = 0
        self._skip = 0
        self._scont = 0
        self._on_script_end: Callable[[], None] | None = None
        self.chooser: Chooser = SequentialChooser()
        self.violations: list[Violation] = []
        self.panicked: Violation | None = None
        self.events: list[Event] = []
        self._sched_glet: greenlet | None = None
        self._next_tid = 1
        #: callables run at every quiescent point (consistency checkers)
        self.quiescent_checks: list[Callable[[Kernel], None]] = []
        #: pid 1, created at boot in the root cgroup
        self.init_task: Task | None = None

        from memcgsim.kernel.fault import FaultInjector
        from memcgsim.kernel.heap import Heap
        from memcgsim.kernel.locking import Lockdep
        from memcgsim.kernel.rcu import RcuState
        from memcgsim.kernel.workqueue import WorkqueueState

        self.heap = Heap(self)
        self.faults = FaultInjector(self)
        self.lockdep = Lockdep(self)
        self.rcu = RcuState(self)
        self.wq = WorkqueueState(self)
        self.rcu.start_kthreads()
        if cfg.boot:
            from memcgsim.init.main import start_kernel

            start_kernel(self)

    @functools.cached_property
    def rng(self) -> random.Random:
        """The run's random source, seeded from ``seed`` (made on first use: seeding costs
        more than a whole explored step, and explored runs draw nothing from it)."""
        return random.Random(self.seed)

    # ------------------------------------------------------------------ access API
    def load(self, obj: KObject, field: str) -> Any:
        """READ_ONCE(obj->field): a scheduling point, a KASAN check, then the read."""
        if self.preemptive:
            self._point(obj, field, _READ)
        else:
            self.steps += 1
        if obj._kowner._kstate:
            self._bad_access(obj, field, _READ)
        value = getattr(obj, field)
        if value is UNINIT:
            self.report(ViolationKind.UNINIT_READ, f"read of uninitialised {obj.kname()}.{field}",
                        obj=obj, field=field)
        return value

    def store(self, obj: KObject, field: str, value: Any) -> None:
        """WRITE_ONCE(obj->field, value)."""
        if self.preemptive:
            self._point(obj, field, _WRITE)
        else:
            self.steps += 1
        if obj._kowner._kstate:
            self._bad_access(obj, field, _WRITE)
        setattr(obj, field, value)

    def xchg(self, obj: KObject, field: str, value: Any) -> Any:
        """xchg(&obj->field, value): atomically store and return the old value."""
        if self.preemptive:
            self._point(obj, field, _RMW)
        else:
            self.steps += 1
        if obj._kowner._kstate:
            self._bad_access(obj, field, _RMW)
        old = getattr(obj, field)
        setattr(obj, field, value)
        return old

    def cmpxchg(self, obj: KObject, field: str, old: Any, new: Any) -> Any:
        """cmpxchg(&obj->field, old, new): store ``new`` if the value is ``old``; return it."""
        if self.preemptive:
            self._point(obj, field, _RMW)
        else:
            self.steps += 1
        if obj._kowner._kstate:
            self._bad_access(obj, field, _RMW)
        cur = getattr(obj, field)
        if cur is old or cur == old:
            setattr(obj, field, new)
        return cur

    def rmw(self, obj: KObject, field: str, fn: Callable[[Any], Any]) -> tuple[Any, Any]:
        """An atomic read-modify-write (atomic_add, inc_not_zero...): returns (old, new)."""
        if self.preemptive:
            self._point(obj, field, _RMW)
        else:
            self.steps += 1
        if obj._kowner._kstate:
            self._bad_access(obj, field, _RMW)
        old = getattr(obj, field)
        new = fn(old)
        setattr(obj, field, new)
        return old, new

    def access(self, obj: KObject, field: str, kind: AccessKind) -> None:
        """A bare scheduling point for a compound operation the caller then performs."""
        if self.preemptive:
            self._point(obj, field, kind)
        else:
            self.steps += 1
        if obj._kowner._kstate:
            self._bad_access(obj, field, kind)

    def point(self, obj: KObject | None, field: str, kind: AccessKind) -> None:
        """A scheduling point declaring a footprint, without the KASAN check (kfree's own)."""
        if self.preemptive:
            self._point(obj, field, kind)
        else:
            self.steps += 1

    def _bad_access(self, obj: KObject, field: str, kind: AccessKind) -> None:
        owner = obj._kowner
        verb = "write" if kind.writes else "read"
        if owner._kstate is KState.FREED:
            self.report(
                ViolationKind.USE_AFTER_FREE,
                f"{verb} of {obj.kname()}.{field} after it was freed"
                + (f" (freed by {freed_by})" if (freed_by := getattr(owner, "_kfreed_by", "")) else ""),
                obj=obj, field=field,
            )
        elif owner._kstate is KState.POISON:
            self.report(
                ViolationKind.BAD_POINTER,
                f"general protection fault: {verb} of {field} through {obj.kname()}",
                obj=obj, field=field,
            )

    # ------------------------------------------------------------------ scheduling points
    def _point(self, obj: KObject | None, field: str, kind: AccessKind) -> None:
        t = self._current
        self.steps += 1
        if t is None:
            return
        if self.footprints:
            if obj is None:
                acc = Access("", field, kind, "")
            else:
                acc = Access(f"{obj._kowner._koid}:{obj._kpath}", field, kind, "")
            if self.record_steps:
                acc.location = self.location(3, frames=8)
        else:
            acc = _ANONYMOUS
        if self._resumed is t:
            # The resumed task's step goes on through this point (see fuse_resume).
            self._resumed = None
            if self.record_steps and self.schedule_log:
                self.schedule_log[-1] = (t.tid, acc)
            if self.on_fused is not None:
                self.on_fused(t, acc)
            return
        t.pending = acc
        if self.inline_schedule:
            nxt = None
            if self._script is not None:
                # Following a previous run's decisions (follow_script).
                n = self._skip
                if n:
                    self._skip = n - 1
                    return
                nxt = self._script_switch()
            if nxt is None:
                # runnable_tasks(), inlined: this runs at every explored step.
                cands = []
                for x in self._active:
                    c = x.cpu_state.curr
                    if c is not None and c is not x:
                        continue
                    st = x.state
                    if st is _RUNNABLE or (st is _WAITING and x.wait_cond()):  # type: ignore[misc]
                        cands.append(x)
                if len(cands) == 1 and self.quiet_steps < self.quiet_budget:
                    # Only the running task can go on: no choice, and a chooser that needs no
                    # per-step view counts it later (Run.pick_task folds quiet_steps in).
                    self.quiet_steps += 1
                    self.script_cont += 1
                    return
                nxt = self.chooser.pick_task(self, cands)
                if nxt is t:
                    # What _switch_to() would do for the task that is already running.
                    self.script_cont += 1
                    if self.record_steps:
                        self.schedule_log.append((t.tid, acc))
                    return
                ops = self.script_ops
                ops.append(self.script_cont)
                ops.append(nxt.tid)
                self.script_cont = 0
            self._chosen = nxt
        assert self._sched_glet is not None
        if self._sched_glet.switch() is _KILL:
            raise _Killed

    def preempt_point(self, what: str = "") -> None:
        """A scheduling point with no footprint (e.g. between two independent phases)."""
        if self.preemptive:
            self._point(None, what, _NONE)
        else:
            self.steps += 1

    def location(self, depth: int = 2, frames: int = 3) -> str:
        """Function and line of the caller ``depth`` frames up, plus its callers.

        Frames of the runtime itself (this file) are skipped, so the result names model code
        or the user's scenario code.
        """
        return format_frames(capture_frames(depth + 1, frames))

    # ------------------------------------------------------------------ context
    @property
    def current(self) -> Task | None:
        """The task taking steps now (``current``); None between steps, in the scheduler."""
        return self._current

    @current.setter
    def current(self, t: Task | None) -> None:
        # this_cpu (smp_processor_id()) is read on every per-cpu access: a plain attribute,
        # updated here whenever the running task changes.
        self._current = t
        self.this_cpu = self.cpus[0] if t is None else t.cpu_state

    def in_atomic(self) -> bool:
        """True where sleeping is forbidden: preemption or irqs disabled, or softirq context."""
        t = self.current
        cpu = self.this_cpu
        return (
            cpu.preempt_count > 0
            or cpu.irqs_disabled
            or (t is not None and t.context is _SOFTIRQ)
        )

    def can_sleep(self) -> bool:
        """True where might_sleep() has nothing to report: callers on hot paths test this
        before formatting its message."""
        cpu = self.this_cpu
        t = self._current
        return not (cpu.preempt_count > 0 or cpu.irqs_disabled or cpu.rcu_nesting > 0
                    or (t is not None and t.context is _SOFTIRQ))

    def might_sleep(self, what: str) -> None:
        """might_sleep(): report sleeping in atomic context or inside an RCU read section."""
        t = self.current
        cpu = self.this_cpu
        if self.in_atomic():
            why = []
            if cpu.preempt_count:
                why.append(f"preempt_count {cpu.preempt_count}")
            if cpu.irqs_disabled:
                why.append("irqs disabled")
            if t is not None and t.context is _SOFTIRQ:
                why.append("in softirq (RCU callback) context")
            if t is not None and t.held_locks:
                why.append("holding " + ", ".join(lk.name for lk in t.held_locks))
            self.report(ViolationKind.SLEEP_IN_ATOMIC,
                        f"BUG: sleeping function called from invalid context: {what} ({'; '.join(why)})")
        elif cpu.rcu_nesting > 0:
            self.report(ViolationKind.SLEEP_IN_RCU,
                        f"voluntary context switch within RCU read-side critical section: {what}")

    def wait_event(
        self, cond: Callable[[], bool], reason: str, *, sleep: bool = True, idle: bool = False,
    ) -> None:
        """Block the current task until ``cond()`` holds (wait_event / a spin loop).

        ``cond`` only reads state (it is evaluated whenever the scheduler looks for a task to
        run, and not at all where a run follows a previous one's decisions).

        ``sleep`` waits off-CPU and must be legal here (might_sleep); otherwise the task spins
        and keeps its CPU, as spin_lock() contention does.  ``idle`` marks a kthread's wait for
        new work, which quiescence and deadlock detection do not count as stuck.
        """
        if cond():
            return
        t = self.current
        if t is None:
            raise RuntimeError(f"wait_event({reason}) outside any task")
        if sleep:
            self.might_sleep(reason)
        t.state = _WAITING
        t.wait_cond = cond
        t.wait_reason = reason
        t.sleeping = sleep
        t.pending = None
        t.idle_wait = idle
        if sleep and t.cpu is not None and self.cpus[t.cpu].curr is t:
            self.cpus[t.cpu].curr = None
        assert self._sched_glet is not None
        if self._sched_glet.switch() is _KILL:
            raise _Killed

    def msleep(self, msecs: float) -> None:
        """msleep(): sleep until the simulated clock has advanced by ``msecs``."""
        self.sleep_ns(int(msecs * 1_000_000))

    def sleep_ns(self, nsecs: int) -> None:
        deadline = self.clock_ns + max(0, nsecs)
        heapq.heappush(self._timers, (deadline, self._next_tid))
        self.wait_event(lambda: self.clock_ns >= deadline, f"msleep until {deadline}ns")

    # ------------------------------------------------------------------ tasks
    def new_task(
        self, name: str, *, cpu: int | None = 0, daemon: bool = False, persistent: bool = False,
        context: Context = Context.PROCESS,
    ) -> Task:
        """Create a task that has no code yet (fork without exec); it inherits init's cgroups."""
        if cpu is not None and not 0 <= cpu < self.nr_cpus:
            raise ValueError(f"cpu {cpu} out of range 0..{self.nr_cpus - 1}")
        t = Task(self._next_tid, name, cpu, daemon=daemon, persistent=persistent, context=context,
                 cpu_state=None if cpu is None else self.cpus[cpu])
        self._next_tid += 1
        self.heap.adopt(t, "fork", static=True)
        self.tasks.append(t)
        hook = getattr(self, "_fork_hook", None)
        if hook is not None:
            hook(t)
        return t

    def spawn(
        self, fn: Callable[..., Any], *args: Any, name: str | None = None, cpu: int | None = 0,
        daemon: bool = False, task: Task | None = None, context: Context = Context.PROCESS,
        idle_until: tuple[Callable[[], bool], str] | None = None,
    ) -> Task:
        """Start ``fn(k, *args)`` in a task: a new one, or the existing idle ``task``.

        ``idle_until = (cond, reason)`` declares that ``fn`` begins with
        ``wait_event(cond, reason, idle=True)``: the task starts out in that wait and its
        coroutine starts only once ``cond()`` holds (a kthread that never gets work costs
        no coroutine switch).
        """
        if task is None:
            task = self.new_task(name or str(getattr(fn, "__name__", "task")), cpu=cpu,
                                 daemon=daemon, context=context)
        elif task.state is not TaskState.IDLE:
            raise RuntimeError(f"{task} is busy")
        t = task

        def body() -> greenlet:
            """The task's code on its coroutine; returns where the coroutine goes next."""
            try:
                t.result = fn(self, *args)
            except (_Killed, GreenletExit):
                return self._sched_glet or greenlet.getcurrent().parent
            except BaseException as e:
                t.exc = e
            if not t.persistent or t.exc is not None:
                # do_exit() runs in the task itself, so it can wait for locks like any code.
                hook = getattr(self, "_exit_hook", None)
                if (hook is not None and not t.exited and not t.held_locks
                        and not isinstance(t.exc, KernelViolation)):
                    t.exited = True
                    try:
                        hook(t)
                    except BaseException as e:
                        t.exc = t.exc or e
            self._task_finished(t)
            return self._sched_glet or greenlet.getcurrent().parent

        t.glet = self.parked_coroutine()
        t.start = body
        t.result = None
        t.exc = None
        if idle_until is None:
            t.state = _RUNNABLE
            t.pending = Access("", "start", _NONE)
        else:
            # As wait_event(cond, reason, idle=True) leaves it; fn's own first wait_event
            # then finds cond true and goes on.
            t.state = _WAITING
            t.wait_cond, t.wait_reason = idle_until
            t.sleeping = True
            t.idle_wait = True
            t.pending = None
        self._active.append(t)
        return t

    def parked_coroutine(self) -> greenlet:
        """A coroutine for a task to start on (a parked one if any), returning to the
        scheduler."""
        pool = _pool()
        g = pool.pop() if pool else greenlet(_worker)
        sched = self._sched_glet or greenlet.getcurrent()
        if g.parent is not sched:
            g.parent = sched
        return g

    def _task_finished(self, t: Task) -> None:
        cpu = self.cpus[t.cpu] if t.cpu is not None else None
        if t.exc is None and t.held_locks:
            names = ", ".join(lk.name for lk in t.held_locks)
            t.exc = self._make_violation_exc(
                ViolationKind.BAD_UNLOCK, f"task {t.name} returned holding {names}")
        if cpu is not None and t.exc is None and (cpu.rcu_nesting or cpu.preempt_count):
            t.exc = self._make_violation_exc(
                ViolationKind.WARN,
                f"task {t.name} returned with rcu_nesting {cpu.rcu_nesting}, "
                f"preempt_count {cpu.preempt_count}")
        if cpu is not None and cpu.curr is t:
            cpu.curr = None
        t.pending = None
        t.glet = None
        if t in self._active:
            self._active.remove(t)
        if t.persistent and t.exc is None:
            t.state = TaskState.IDLE
        else:
            t.state = TaskState.DONE

    def _make_violation_exc(self, kind: ViolationKind, msg: str) -> BaseException:
        try:
            self.report(kind, msg)
        except KernelViolation as e:
            return e
        return KernelViolation(self.violations[-1])

    def call(self, fn: Callable[..., T], *args: Any, cpu: int = 0, task: Task | None = None,
             name: str | None = None) -> T:
        """Run ``fn(k, *args)`` as a task to completion (other tasks may run meanwhile).

        Raises whatever ``fn`` raised (a KernelError for a failed system call), or
        KernelViolation if a checker fired.
        """
        t = self.spawn(fn, *args, cpu=cpu, task=task, name=name)
        self.run(until=lambda: t.state in (TaskState.DONE, TaskState.IDLE))
        if t.state not in (TaskState.DONE, TaskState.IDLE):
            v = self._stuck_violation() or Violation(
                ViolationKind.DEADLOCK, f"task {t.name} never completed: {t.wait_reason}")
            raise KernelViolation(v)
        if t.exc is not None:
            raise t.exc
        return t.result  # type: ignore[no-any-return]

    def run(self, until: Callable[[], bool] | None = None, max_steps: int | None = None) -> bool:
        """Run the scheduler until ``until()`` holds or nothing can run; True if quiescent.

        Without ``until`` and ``max_steps`` this runs to quiescence and then checks it: a task
        still waiting is a deadlock, and the quiescent checkers run.  With either, a run that
        stops because nothing can run simply returns.
        """
        if self.panicked is not None:
            raise KernelViolation(self.panicked)
        if self.current is not None:
            raise RuntimeError("Kernel.run() called from inside a task")
        me = greenlet.getcurrent()
        if self._sched_glet is not me:
            self._sched_glet = me
            for t in self._active:
                if t.glet is not None:
                    t.glet.parent = me
        limit = None if max_steps is None else self.steps + max_steps
        chooser = self.chooser
        while True:
            nxt = self._chosen
            if nxt is not None:
                # Chosen at a scheduling point (inline_schedule).
                self._chosen = None
                self._switch_to(nxt)
                continue
            if until is not None and until():
                return False
            if limit is not None and self.steps >= limit:
                return False
            if self._script is not None:
                if self._skip:
                    raise RuntimeError("a followed schedule goes on where this run switches")
                nxt = self._script_switch()
                if nxt is not None:
                    self._switch_to(nxt)
                    continue
            cands = self.runnable_tasks()
            if not cands:
                if self._fire_timers():
                    continue
                if until is not None or limit is not None:
                    # The caller judges a run that stopped short (Kernel.call does).
                    return not self._stuck()
                self._check_stuck()
                for check in self.quiescent_checks:
                    check(self)
                return True
            if len(cands) == 1 and not self.observe_steps:
                t = cands[0]
            else:
                t = chooser.pick_task(self, cands)
            if self.inline_schedule:
                ops = self.script_ops
                ops.append(self.script_cont)
                ops.append(t.tid)
                self.script_cont = 0
            self._switch_to(t)

    # ------------------------------------------------------------------ schedule scripts
    def follow_script(self, ops: list[int], npairs: int, cont: int,
                      on_end: Callable[[], None]) -> None:
        """Take this run's first scheduling decisions from a previous run's (``script_ops``):
        its first ``npairs`` (go-ons, tid) pairs, then ``cont`` go-ons; at the decision after
        those, ``on_end()`` is called and that decision and all later ones are made as usual.

        A run whose choices start as the previous run's did takes the same steps (the model is
        deterministic), so the decisions are those the previous run made: following them skips
        computing the runnable set and asking the chooser at every step, which the chooser
        accounts for in ``on_end`` (the explorer's Run.follow).  Wait conditions have no side
        effects, so not evaluating them changes nothing.
        """
        self.script_ops = ops[:2 * npairs]
        self._script = ops
        self._slen = 2 * npairs
        self._spos = 0
        self._scont = cont
        self._skip = ops[0] if npairs else cont
        self._on_script_end = on_end

    def _script_switch(self) -> Task | None:
        """At a followed decision with no go-on left: the task the script switches to, or None
        at the script's end (that decision is then made as usual)."""
        ops = self._script
        assert ops is not None
        pos = self._spos
        if pos < self._slen:
            tid = ops[pos + 1]
            pos += 2
            self._spos = pos
            self._skip = ops[pos] if pos < self._slen else self._scont
            t = self.tasks[tid - 1]
            if t.tid != tid:
                t = next(x for x in self.tasks if x.tid == tid)
            return t
        self._script = None
        self.script_cont = self._scont
        on_end = self._on_script_end
        self._on_script_end = None
        if on_end is not None:
            on_end()
        return None

    def runnable_tasks(self) -> list[Task]:
        """Tasks that could take the next step, in tid order."""
        out = []
        for t in self._active:
            # A bound task's cpu_state is its CPU; an unbound kthread's is private and
            # never has a curr, so it is never held off.
            c = t.cpu_state.curr
            if c is not None and c is not t:
                continue
            st = t.state
            if st is _RUNNABLE or (st is _WAITING and t.wait_cond()):  # type: ignore[misc]
                out.append(t)
        return out

    def _switch_to(self, t: Task) -> None:
        if self.fuse_resume:
            p = t.pending
            self._resumed = t if p is None or p.kind is _NONE else None
        if t.state is _WAITING:
            t.state = _RUNNABLE
            t.wait_cond = None
            t.wait_reason = ""
            t.sleeping = False
        if t.cpu is not None:
            self.cpus[t.cpu].curr = t
        if self.record_steps:
            self.schedule_log.append((t.tid, t.pending))
        # self.current = t / None, without the property (two per task switch)
        self._current = t
        self.this_cpu = t.cpu_state
        assert t.glet is not None
        start = t.start
        if start is not None:
            t.start = None
            t.glet.switch(start)
        else:
            t.glet.switch()
        self._current = None
        self.this_cpu = self.cpus[0]
        if t.exc is not None and t.state is not _RUNNABLE:
            exc = t.exc
            if isinstance(exc, KernelViolation) or not self._is_task_error(exc):
                # A panic, or a bug in the model itself: stop the world.
                if isinstance(exc, KernelViolation):
                    self.panicked = exc.violation
                raise exc

    def kill_tasks(self) -> None:
        """Unwind every task that has not finished (the world is being thrown away).

        A suspended coroutine's stack is invisible to Python's cycle collector, so a
        discarded run whose tasks are still waiting would never be freed: the explorer calls
        this after each execution.
        """
        self.current = None
        self._resumed = None
        me = greenlet.getcurrent()
        # The unwound tasks' coroutines come back here, then park.
        self._sched_glet = me
        for t in self.tasks:
            g = t.glet
            t.glet = None
            if g is None or g.dead:
                continue
            if t.start is not None:
                t.start = None  # never started: the coroutine is idle
                pool = _pool()
                if len(pool) < _POOL_MAX:
                    pool.append(g)
                continue
            if g.parent is not me:
                g.parent = me
            g.switch(_KILL)
        self._active.clear()

    @staticmethod
    def _is_task_error(exc: BaseException) -> bool:
        from memcgsim.kernel.errno import KernelError

        return isinstance(exc, KernelError)

    def _fire_timers(self) -> bool:
        """Advance the clock to the next sleeping task's deadline; False if none is pending."""
        while self._timers:
            deadline, _ = heapq.heappop(self._timers)
            if deadline > self.clock_ns:
                self.clock_ns = deadline
                return True
        return False

    def advance_clock(self, nsecs: int) -> None:
        """Let ``nsecs`` of simulated time pass, running whatever becomes due on the way."""
        end = self.clock_ns + nsecs
        self.run()
        while self._timers and self._timers[0][0] <= end:
            deadline, _ = heapq.heappop(self._timers)
            self.clock_ns = max(self.clock_ns, deadline)
            self.run()
        self.clock_ns = max(self.clock_ns, end)
        self.run()

    def settle(self) -> None:
        """Run until nothing is pending: grace periods, RCU callbacks, work items, timers."""
        self.run()

    def _stuck(self) -> list[Task]:
        return [t for t in self._active
                if t.state is _WAITING and not t.idle_wait]

    def _stuck_violation(self) -> Violation | None:
        stuck = self._stuck()
        if not stuck:
            return None
        desc = "; ".join(f"{t.name} waits for {t.wait_reason}" for t in stuck)
        return Violation(ViolationKind.DEADLOCK, f"no task can make progress: {desc}",
                         task=stuck[0].name, cpu=stuck[0].cpu, step=self.steps)

    def _check_stuck(self) -> None:
        v = self._stuck_violation()
        if v is not None:
            self._record(v)

    def is_quiescent(self) -> bool:
        """Nothing can run and nothing waits except idle kthreads."""
        return not self.runnable_tasks() and not self._stuck() and not self._timers

    # ------------------------------------------------------------------ reports and log
    def report(self, kind: ViolationKind, message: str, *, obj: KObject | None = None,
               field: str = "") -> None:
        """Record a checker's report; raise KernelViolation if configured to panic."""
        t = self.current
        v = Violation(
            kind=kind, message=message, task=t.name if t else "",
            cpu=(t.cpu if t else None), step=self.steps,
            obj=obj.kname() if obj is not None else "", field=field,
            location=self.location(2, frames=8),
        )
        self._record(v)

    def _record(self, v: Violation) -> None:
        self.violations.append(v)
        self.trace("VIOLATION", str(v.kind), v.message)
        if self.config.panic_on_violation:
            self.panicked = v
            raise KernelViolation(v)

    def warn_on(self, cond: bool, message: str) -> bool:
        """WARN_ON(cond): report and carry on (or panic, with panic_on_violation)."""
        if cond:
            self.report(ViolationKind.WARN, "WARNING: " + message)
        return cond

    def trace(self, what: str, *detail: object) -> None:
        """Append a lifecycle event to the log (deterministic text only)."""
        if self.tracing:
            t = self.current
            self.events.append(Event(self.steps, self.clock_ns, t.name if t else "-", what,
                                     " ".join(str(d) for d in detail)))

    def event_log(self) -> Iterator[str]:
        for e in self.events:
            yield str(e)

    # ------------------------------------------------------------------ syscall-level API
    # Each runs the kernel entry point in a short-lived task and raises KernelError (with the
    # errno a real system call would return) on failure.

    def mkdir(self, path: str, *, cpu: int = 0, subtree_control: str = "") -> Cgroup:
        """mkdir(2) of a cgroup directory, e.g. ``k.mkdir("/a/b")``.

        As on a real kernel, the new cgroup's own cgroup.subtree_control is empty; pass
        ``subtree_control="+memory"`` to write it right after (so its children get a memcg).
        """
        from memcgsim.cgroup.cgroup import sys_mkdir

        cgrp = self.call(sys_mkdir, path, cpu=cpu, name="mkdir")
        if subtree_control:
            self.set_subtree_control(path, subtree_control, cpu=cpu)
        return cgrp

    def set_subtree_control(self, path: str, value: str, *, cpu: int = 0) -> None:
        """Write ``value`` (``"+memory"``, ``"-memory"``) to ``path``/cgroup.subtree_control."""
        from memcgsim.cgroup.cgroup import cgroup_subtree_control_write
        from memcgsim.kernel.errno import KernelError

        cgrp = self.lookup(path)
        ret = self.call(cgroup_subtree_control_write, cgrp, value, cpu=cpu,
                        name="subtree_control")
        if ret < 0:
            raise KernelError(ret, f"{path}/cgroup.subtree_control")

    def rmdir(self, path: str, *, cpu: int = 0) -> None:
        """rmdir(2) of a cgroup directory."""
        from memcgsim.cgroup.cgroup import sys_rmdir

        self.call(sys_rmdir, path, cpu=cpu, name="rmdir")

    def lookup(self, path: str) -> Cgroup:
        """The live cgroup at ``path`` (KernelError ENOENT if there is none)."""
        from memcgsim.cgroup.cgroup import cgroup_lookup

        return cgroup_lookup(self, path)

    def mem_cgroup(self, path: str) -> MemCgroup:
        """The memcg of the live cgroup at ``path`` (its own, or the nearest ancestor's)."""
        from memcgsim.cgroup.cgroup import cgroup_e_css

        css = cgroup_e_css(self, self.lookup(path), self.cgroup.subsys("memory"))
        return css  # type: ignore[return-value]

    def attach(self, task: Task, path: str) -> None:
        """Write ``task``'s pid to ``path``/cgroup.procs."""
        from memcgsim.cgroup.cgroup import cgroup_attach_task
        from memcgsim.kernel.errno import KernelError

        cgrp = self.lookup(path)
        ret = self.call(cgroup_attach_task, cgrp, task, cpu=task.cpu or 0, name="attach")
        if ret < 0:
            raise KernelError(ret, f"{path}/cgroup.procs")

    def new_process(self, name: str, path: str = "/", *, cpu: int = 0) -> Task:
        """A user process (persistent task) living in the cgroup at ``path``."""
        t = self.new_task(name, cpu=cpu, persistent=True)
        if path not in ("", "/"):
            self.attach(t, path)
        return t

