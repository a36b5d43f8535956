"""Workqueues (kernel/workqueue.c): work items run in order by per-CPU kworker kthreads.

A bound workqueue queues an item on the CPU that queues it (WORK_CPU_UNBOUND resolves to the
local CPU) and that CPU's kworker runs its items one at a time in queueing order, in process
context: work functions may sleep.  ``queue_rcu_work`` waits a grace period, then queues.

Model simplifications: one kworker per CPU per workqueue (max_active 1, as cgroup_destroy_wq
has), no concurrency management, no rescuers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from memcgsim.kernel.objects import KObject
from memcgsim.kernel.rcu import RcuHead, call_rcu
from memcgsim.kernel.task import AccessKind

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel

__all__ = [
    "RcuWork",
    "WorkStruct",
    "Workqueue",
    "WorkqueueState",
    "alloc_workqueue",
    "flush_workqueue",
    "queue_rcu_work",
    "queue_work",
    "queue_work_on",
]

WorkFunc = Callable[["Kernel", "WorkStruct"], None]


#: enum members as module constants (AccessKind.X is a slow metaclass lookup)
_RMW = AccessKind.RMW


class WorkStruct(KObject):
    """struct work_struct embedded in the object it works on (container_of in ``func``)."""

    ktype = "struct work_struct"

    def __init__(self, owner: KObject | None = None, path: str = "work",
                 func: WorkFunc | None = None) -> None:
        super().__init__()
        if owner is not None:
            self.embed(owner, path)
        self.func = func
        #: WORK_STRUCT_PENDING
        self.pending = False


class RcuWork(KObject):
    """struct rcu_work: a work item queued after a grace period."""

    ktype = "struct rcu_work"

    def __init__(self, owner: KObject | None = None, path: str = "rwork",
                 func: WorkFunc | None = None) -> None:
        super().__init__()
        if owner is not None:
            self.embed(owner, path)
        self.work = WorkStruct(owner if owner is not None else self, f"{path}.work", func)
        self.rcu = RcuHead(owner if owner is not None else self, f"{path}.rcu")
        self.rcu.rwork = self  # type: ignore[attr-defined]
        self.wq: Workqueue | None = None


class Workqueue(KObject):
    """struct workqueue_struct with one pool (and one kworker) per CPU."""

    ktype = "struct workqueue_struct"

    def __init__(self, k: Kernel, name: str) -> None:
        super().__init__()
        self.name = name
        self.queues: list[deque[WorkStruct]] = [deque() for _ in range(k.nr_cpus)]
        self.running = [0] * k.nr_cpus
        self.nr_executed = 0

    def _klabel(self) -> str:
        return self.name

    @property
    def busy(self) -> bool:
        return any(self.queues) or any(self.running)


class WorkqueueState:
    """All workqueues of a kernel."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.wqs: dict[str, Workqueue] = {}

    def pending_objects(self) -> list[KObject]:
        return [w for wq in self.wqs.values() for q in wq.queues for w in q]


def alloc_workqueue(k: Kernel, name: str) -> Workqueue:
    """alloc_workqueue(name, 0, 1): a bound workqueue with a kworker on every CPU."""
    wq = Workqueue(k, name)
    k.heap.adopt(wq, "alloc_workqueue", static=True)
    k.wq.wqs[name] = wq
    for c in range(k.nr_cpus):
        k.spawn(_worker_thread, wq, c, name=f"kworker/{c}:{name}", cpu=c, daemon=True)
    return wq


def _worker_thread(k: Kernel, wq: Workqueue, cpu: int) -> None:
    """worker_thread() / process_one_work()."""
    q = wq.queues[cpu]
    while True:
        k.wait_event(lambda: bool(q), f"work on {wq.name}", idle=True)
        k.point(wq, f"q{cpu}", _RMW)
        work = q.popleft()
        wq.running[cpu] += 1
        # set_work_pool_and_clear_pending(): the item may be queued again while it runs.
        k.store(work, "pending", False)
        assert work.func is not None
        try:
            work.func(k, work)
        finally:
            wq.running[cpu] -= 1
            wq.nr_executed += 1


def _insert(k: Kernel, wq: Workqueue, work: WorkStruct, cpu: int | None = None) -> None:
    if cpu is None:
        cpu = k.this_cpu.id
    k.point(wq, f"q{cpu}", _RMW)
    wq.queues[cpu].append(work)


def queue_work(k: Kernel, wq: Workqueue, work: WorkStruct) -> bool:
    """queue_work(): False if the item is already pending, else queue it on this CPU."""
    old, _ = k.rmw(work, "pending", lambda _p: True)
    if old:
        return False
    _insert(k, wq, work)
    return True


def queue_work_on(k: Kernel, cpu: int, wq: Workqueue, work: WorkStruct) -> bool:
    """queue_work_on() / schedule_work_on(): queue on a given CPU's worker."""
    old, _ = k.rmw(work, "pending", lambda _p: True)
    if old:
        return False
    _insert(k, wq, work, cpu)
    return True


def _rcu_work_rcufn(k: Kernel, head: RcuHead) -> None:
    """rcu_work_rcufn(): the grace period has passed; queue the work (still pending)."""
    rwork: RcuWork = head.rwork  # type: ignore[attr-defined]
    assert rwork.wq is not None
    _insert(k, rwork.wq, rwork.work)


def queue_rcu_work(k: Kernel, wq: Workqueue, rwork: RcuWork) -> bool:
    """queue_rcu_work(): queue ``rwork`` after an RCU grace period."""
    old, _ = k.rmw(rwork.work, "pending", lambda _p: True)
    if old:
        return False
    rwork.wq = wq
    call_rcu(k, rwork.rcu, _rcu_work_rcufn)
    return True


def flush_workqueue(k: Kernel, wq: Workqueue) -> None:
    """flush_workqueue(): sleep until everything queued so far has run.

    Simplified: waits until the workqueue is completely idle.
    """
    k.might_sleep(f"flush_workqueue({wq.name})")
    k.wait_event(lambda: not wq.busy, f"flush_workqueue({wq.name})")


def work_pending(k: Kernel, work: WorkStruct) -> Any:
    return k.load(work, "pending")
