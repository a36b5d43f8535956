"""Simulated CPUs and tasks (struct task_struct, the per-CPU state a model needs)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memcgsim.kernel.objects import KObject

if TYPE_CHECKING:
    from greenlet import greenlet

    from memcgsim.kernel.locking import LockBase

__all__ = ["CPU", "Access", "AccessKind", "Context", "Task", "TaskState"]


class AccessKind(enum.IntEnum):
    """What a scheduling point does to the location it names (for DPOR footprints)."""

    READ = 0
    WRITE = 1
    #: read-modify-write (atomic ops, xchg, test_and_set)
    RMW = 2
    ACQUIRE = 3
    RELEASE = 4
    #: a step with no shared-memory footprint of its own (wakeup, task start)
    NONE = 5

    @property
    def writes(self) -> bool:
        return self in (AccessKind.WRITE, AccessKind.RMW, AccessKind.ACQUIRE, AccessKind.RELEASE)


@dataclass(slots=True)
class Access:
    """The footprint of one scheduling point: ``kind`` of ``obj``'s member ``field``."""

    obj: str
    field: str
    kind: AccessKind
    #: model function and line performing it (``"memcg_ptr_release:57"``)
    location: str = ""

    @property
    def key(self) -> str:
        return f"{self.obj}.{self.field}"

    def conflicts(self, other: Access) -> bool:
        """True if the two accesses do not commute (same location, one of them writes)."""
        if self.kind is AccessKind.NONE or other.kind is AccessKind.NONE:
            return False
        return self.key == other.key and (self.kind.writes or other.kind.writes)


class TaskState(enum.Enum):
    #: exists (holds a css_set) but has no code to run
    IDLE = "idle"
    RUNNABLE = "runnable"
    #: waiting for a condition: sleeping (off CPU) or spinning (holding its CPU)
    WAITING = "waiting"
    DONE = "done"


class Context(enum.Enum):
    """Execution context, for might_sleep() and lockdep's irq-safety checks."""

    PROCESS = "process"
    #: RCU callback invocation (softirq, or an rcuc kthread with bh disabled): atomic
    SOFTIRQ = "softirq"


@dataclass(eq=False)
class CPU:
    """Per-CPU state a non-preemptible kernel keeps: who runs here and what is disabled."""

    id: int
    #: the task owning this CPU; a task waiting by spinning keeps it, a sleeping one gives it up
    curr: Task | None = None
    #: rcu_read_lock() nesting
    rcu_nesting: int = 0
    #: preempt_count (spinlocks, rcu_read_lock_sched, get_cpu)
    preempt_count: int = 0
    irqs_disabled: bool = False
    #: times this CPU left its read-side state (every flavour at zero): a step that leaves and
    #: re-enters it is a quiescent state a grace-period start can observe (explore/footprint)
    rcu_exits: int = 0
    #: "cpu<id>": the member name per-cpu accesses declare (precomputed: hot paths)
    field: str = ""

    def __post_init__(self) -> None:
        self.field = f"cpu{self.id}"

    @property
    def in_rcu_reader(self) -> bool:
        """Inside an RCU read-side critical section of any flavour (consolidated RCU, 5.0+)."""
        return self.rcu_nesting > 0 or self.preempt_count > 0 or self.irqs_disabled


class Task(KObject):
    """A task_struct: a name, a pid, a home CPU and, while it runs code, a coroutine.

    Tasks are stackful coroutines (greenlets): model code is ordinary Python written like the
    kernel's C, and every access to shared state goes through the Kernel, which may switch to
    the scheduler there.  A task is pinned to ``cpu``; ``cpu is None`` marks an unbound kthread
    that never touches per-CPU state (the RCU grace-period kthread).
    """

    def __init__(
        self,
        tid: int,
        name: str,
        cpu: int | None,
        *,
        daemon: bool = False,
        persistent: bool = False,
        context: Context = Context.PROCESS,
        cpu_state: CPU | None = None,
    ) -> None:
        super().__init__()
        self.tid = tid
        self.pid = tid
        self.name = name
        self.cpu = cpu
        #: the CPU this task runs on; an unbound kthread has private state (it owns no CPU)
        self.cpu_state = cpu_state if cpu_state is not None else CPU(-1)
        #: kthreads that loop forever; quiescence ignores them while they wait
        self.daemon = daemon
        #: a process that stays around (IDLE) after its code returns, instead of exiting
        self.persistent = persistent
        self.context = context
        self.state = TaskState.IDLE
        self.glet: greenlet | None = None
        #: the code a spawned task runs, until its coroutine starts it
        self.start: Callable[[], Any] | None = None
        self.wait_cond: Callable[[], bool] | None = None
        self.wait_reason = ""
        #: waiting by sleeping (gives up the CPU) rather than spinning
        self.sleeping = False
        #: a kthread waiting for new work: not stuck, whatever it waits for
        self.idle_wait = False
        #: the access this task will perform when next scheduled (explorer footprint)
        self.pending: Access | None = None
        self.result: Any = None
        self.exc: BaseException | None = None
        self.held_locks: list[LockBase] = []
        #: the css_set this task belongs to (cgroup core); None before cgroup_init
        self.cgroups: Any = None
        #: set when the task has exited and its cgroup references were dropped
        self.exited = False
        #: memalloc_use_memcg()/set_active_memcg(): charge allocations here instead
        self.active_memcg: Any = None
        #: pages charged above memory.high, reclaimed on return to user space
        self.memcg_nr_pages_over_high = 0

    @property
    def runnable(self) -> bool:
        if self.state is TaskState.RUNNABLE:
            return True
        if self.state is TaskState.WAITING:
            assert self.wait_cond is not None
            return self.wait_cond()
        return False

    ktype = "struct task_struct"

    def _klabel(self) -> str:
        return f"{self.name}[{self.pid}]"

    def __repr__(self) -> str:
        return f"<task {self.name} pid {self.pid} cpu {self.cpu} {self.state.value}>"
