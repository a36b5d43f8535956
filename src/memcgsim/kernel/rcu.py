"""RCU: read-side sections, grace periods, callbacks (kernel/rcu/tree.c, consolidated flavours).

A CPU is inside a read-side critical section while it holds rcu_read_lock(), has preemption or
interrupts disabled (since 5.0 every flavour is one: rcu_read_lock_sched() readers count too),
or runs an RCU callback.  A grace period started by the ``rcu_gp`` kthread waits only for the
CPUs that were readers when it started, each until that CPU next leaves its read section.
Callbacks queued by call_rcu() on a CPU wait for a full grace period after queueing
(``rcu_seq_snap()``) and are invoked in queueing order by that CPU's ``rcuc`` kthread, in
softirq context with bottom halves disabled (the ``rcutree.use_softirq=0`` configuration).

Model simplifications: one grace-period sequence for the whole machine (Tree RCU's hierarchy of
rcu_node structures is not modelled); no expedited grace periods; no callback offloading.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memcgsim.kernel.objects import RCU_HEAD_CLOBBER, KObject
from memcgsim.kernel.task import CPU, AccessKind, Context
from memcgsim.kernel.violations import ViolationKind

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.list import ListHead

__all__ = [
    "RcuHead",
    "RcuState",
    "call_rcu",
    "rcu_assign_pointer",
    "rcu_barrier",
    "rcu_dereference",
    "rcu_dereference_protected",
    "rcu_read_lock",
    "rcu_read_lock_held",
    "rcu_read_unlock",
    "rcu_replace_pointer",
    "rcu_swap_protected",
    "synchronize_rcu",
]

RcuFunc = Callable[["Kernel", "RcuHead"], None]

_WRITE = AccessKind.WRITE


#: enum members as module constants (AccessKind.X is a slow metaclass lookup)
_READ = AccessKind.READ
_RMW = AccessKind.RMW
_SOFTIRQ = Context.SOFTIRQ
_PROCESS = Context.PROCESS


class RcuHead(KObject):
    """struct rcu_head, embedded in the object it frees.

    ``union`` names a list_head sharing its storage (``union { struct list_head list;
    struct rcu_head rcu; }`` in struct mem_cgroup_ptr): call_rcu() overwrites it.
    """

    ktype = "struct rcu_head"

    def __init__(self, owner: KObject | None = None, path: str = "rcu",
                 union: ListHead | None = None) -> None:
        super().__init__()
        if owner is not None:
            self.embed(owner, path)
        self.func: Any = None
        #: debug-objects state: queued for a grace period, not yet invoked
        self.queued = False
        self.union = union


@dataclass(slots=True)
class _Callback:
    head: RcuHead
    func: RcuFunc
    need_seq: int


class RcuState(KObject):
    """struct rcu_state: the grace-period sequence and per-CPU callback lists."""

    ktype = "struct rcu_state"

    def __init__(self, k: Kernel) -> None:
        super().__init__()
        self.k = k
        #: rcu_seq: even when idle, odd while a grace period is in progress
        self.gp_seq = 0
        #: highest gp_seq some caller needs to see completed
        self.need_seq = 0
        #: CPUs the current grace period still waits for
        self.gp_waiting: set[int] = set()
        self.cbs: list[deque[_Callback]] = [deque() for _ in range(k.nr_cpus)]
        self.enqueued = [0] * k.nr_cpus
        #: sum(enqueued), kept up to date (the explorer reads it at every step)
        self.nr_enqueued = 0
        self.invoked = [0] * k.nr_cpus
        self.nr_gps = 0
        k.heap.adopt(self, "rcu_init", static=True)

    def snap(self) -> int:
        """rcu_seq_snap(): the gp_seq value once a full grace period from now has ended."""
        return (self.gp_seq + 3) & ~1

    def request(self, need: int) -> None:
        if need > self.need_seq:
            self.need_seq = need

    def note_qs(self, cpu: CPU) -> None:
        """rcu_qs(): ``cpu`` left its read-side section; the current GP stops waiting for it."""
        if self.gp_waiting and not cpu.in_rcu_reader:
            self.gp_waiting.discard(cpu.id)

    def pending_objects(self) -> list[KObject]:
        return [cb.head for q in self.cbs for cb in q]

    @property
    def nr_pending_callbacks(self) -> int:
        return sum(len(q) for q in self.cbs)

    def start_kthreads(self) -> None:
        """rcu_spawn_gp_kthread() and the per-CPU callback kthreads (each starts out in its
        idle wait, as it would be after its first steps)."""
        k = self.k
        k.spawn(rcu_gp_kthread, name="rcu_gp", cpu=None, daemon=True,
                idle_until=(_gp_wanted(self), "a grace-period request"))
        for c in range(k.nr_cpus):
            k.spawn(rcu_cpu_kthread, c, name=f"rcuc/{c}", cpu=c, daemon=True,
                    idle_until=(_cbs_ready(self, c), f"rcuc/{c}: ready callbacks"))


def _gp_wanted(rcu: RcuState) -> Callable[[], bool]:
    """rcu_gp_kthread()'s idle condition: a grace period is requested."""
    return lambda: rcu.need_seq > rcu.gp_seq


def _cbs_ready(rcu: RcuState, cpu: int) -> Callable[[], bool]:
    """rcu_cpu_kthread()'s idle condition: the first callback's grace period has ended."""
    q = rcu.cbs[cpu]

    def ready() -> bool:  # (polled at every explored step: no bool() call)
        if q:
            return q[0].need_seq <= rcu.gp_seq
        return False

    return ready


def rcu_gp_kthread(k: Kernel) -> None:
    """rcu_gp_kthread(): start a grace period when one is needed, end it when it may end."""
    rcu = k.rcu
    wanted = _gp_wanted(rcu)
    while True:
        k.wait_event(wanted, "a grace-period request", idle=True)
        # rcu_gp_init(): snapshot which CPUs are readers now.
        k.point(rcu, "gp_start", _WRITE)
        rcu.gp_seq += 1
        rcu.gp_waiting = {c.id for c in k.cpus if c.in_rcu_reader}
        if k.tracing:
            k.trace("rcu_gp_start", f"gp_seq={rcu.gp_seq}",
                    f"waits={sorted(rcu.gp_waiting)}" if rcu.gp_waiting else "")
        k.wait_event(lambda: not rcu.gp_waiting, "quiescent states", idle=True)
        # rcu_gp_cleanup()
        k.point(rcu, "gp_end", _WRITE)
        rcu.gp_seq += 1
        rcu.nr_gps += 1
        if k.tracing:
            k.trace("rcu_gp_end", f"gp_seq={rcu.gp_seq}")


def rcu_cpu_kthread(k: Kernel, cpu: int) -> None:
    """rcu_cpu_kthread() / rcu_do_batch(): invoke this CPU's ready callbacks in order."""
    rcu = k.rcu
    q = rcu.cbs[cpu]
    c = k.cpus[cpu]
    ready = _cbs_ready(rcu, cpu)
    reason = f"rcuc/{cpu}: ready callbacks"
    while True:
        k.wait_event(ready, reason, idle=True)
        # rcu_segcblist_extract_done_cbs(): the head of the done segment (call_rcu() appends
        # to the other end: the two commute)
        k.point(rcu, f"done{cpu}", _RMW)
        cb = q.popleft()
        cb.head.queued = False
        # local_bh_disable(): callbacks are atomic and are RCU readers while they run.
        me = k.current
        assert me is not None
        me.context = _SOFTIRQ
        c.preempt_count += 1
        try:
            cb.func(k, cb.head)
        finally:
            c.preempt_count -= 1
            me.context = _PROCESS
        rcu.invoked[cpu] += 1
        if not c.in_rcu_reader:
            c.rcu_exits += 1
        rcu.note_qs(c)


def rcu_read_lock(k: Kernel) -> None:
    """rcu_read_lock(): enter a read-side critical section (nests)."""
    cpu = k.this_cpu
    if k.preemptive:
        k.point(k.rcu, cpu.field, _WRITE)
    else:
        k.steps += 1  # k.point() of a sequential run, inlined: this runs on every lookup
    cpu.rcu_nesting += 1


def rcu_read_unlock(k: Kernel) -> None:
    """rcu_read_unlock(): leave it; the outermost unlock is a quiescent state."""
    cpu = k.this_cpu
    if k.preemptive:
        k.point(k.rcu, cpu.field, _WRITE)
    else:
        k.steps += 1
    if cpu.rcu_nesting <= 0:
        k.report(ViolationKind.RCU_LOCKDEP, "rcu_read_unlock() without matching rcu_read_lock()")
        return
    cpu.rcu_nesting -= 1
    if cpu.rcu_nesting == 0 and not cpu.preempt_count and not cpu.irqs_disabled:
        cpu.rcu_exits += 1
        if k.rcu.gp_waiting:
            k.rcu.note_qs(cpu)


def rcu_read_lock_held(k: Kernel) -> bool:
    """rcu_read_lock_any_held(): inside any flavour of read-side section."""
    return k.this_cpu.in_rcu_reader


def rcu_dereference(k: Kernel, obj: KObject, field: str) -> Any:
    """rcu_dereference(obj->field): lockdep-RCU complains outside a read-side section."""
    if not k.this_cpu.in_rcu_reader:
        k.report(ViolationKind.RCU_LOCKDEP,
                 f"suspicious rcu_dereference_check() usage of {obj.kname()}.{field}: "
                 "not in an RCU read-side critical section", obj=obj, field=field)
    return k.load(obj, field)


def rcu_dereference_protected(k: Kernel, obj: KObject, field: str, held: bool) -> Any:
    """rcu_dereference_protected(p, c): an updater's read, legal when ``held`` (its lock)."""
    if not held:
        k.report(ViolationKind.RCU_LOCKDEP,
                 f"suspicious rcu_dereference_protected() usage of {obj.kname()}.{field}",
                 obj=obj, field=field)
    return k.load(obj, field)


def rcu_assign_pointer(k: Kernel, obj: KObject, field: str, value: Any) -> None:
    """rcu_assign_pointer(obj->field, value): publish (a release store)."""
    k.store(obj, field, value)


def rcu_replace_pointer(k: Kernel, obj: KObject, field: str, new: Any, held: bool = True) -> Any:
    """rcu_replace_pointer(rcu_ptr, ptr, c): a protected read then a publish; returns the old.

    Two separate accesses, as in C: it is atomic only under the updater's lock ``held``.
    """
    old = rcu_dereference_protected(k, obj, field, held)
    rcu_assign_pointer(k, obj, field, new)
    return old


# 5.3 spells it rcu_swap_protected(rcu_ptr, ptr, c); it became rcu_replace_pointer() in 5.5.
rcu_swap_protected = rcu_replace_pointer


def call_rcu(k: Kernel, head: RcuHead, func: RcuFunc) -> None:
    """call_rcu(head, func): invoke ``func(head)`` after a grace period, on this CPU's list.

    CONFIG_DEBUG_OBJECTS_RCU_HEAD: queueing a head that is already queued is reported.
    """
    rcu = k.rcu
    cpu = k.this_cpu.id
    k.access(head, "func", _WRITE)
    if head.queued:
        k.report(ViolationKind.DEBUG_OBJECTS,
                 f"ODEBUG: activate active (active state 1) object type: rcu_head {head.kname()}",
                 obj=head)
        return
    head.queued = True
    head.func = func
    if head.union is not None:
        # The rcu_head overlays the list_head: the list pointers now read as garbage.
        head.union.next = RCU_HEAD_CLOBBER
        head.union.prev = RCU_HEAD_CLOBBER
    k.point(rcu, f"cbs{cpu}", _RMW)
    need = rcu.snap()
    rcu.request(need)
    rcu.cbs[cpu].append(_Callback(head, func, need))
    rcu.enqueued[cpu] += 1
    rcu.nr_enqueued += 1


def synchronize_rcu(k: Kernel) -> None:
    """synchronize_rcu(): sleep until a full grace period has elapsed."""
    rcu = k.rcu
    k.might_sleep("synchronize_rcu()")
    k.point(rcu, "*", _READ)
    need = rcu.snap()
    rcu.request(need)
    k.wait_event(lambda: rcu.gp_seq >= need, "synchronize_rcu()")


def rcu_barrier(k: Kernel) -> None:
    """rcu_barrier(): sleep until every callback queued before the call has been invoked."""
    rcu = k.rcu
    k.might_sleep("rcu_barrier()")
    k.point(rcu, "*", _READ)
    targets = list(rcu.enqueued)
    k.wait_event(lambda: all(rcu.invoked[c] >= targets[c] for c in range(k.nr_cpus)),
                 "rcu_barrier()")
