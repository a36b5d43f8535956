"""percpu_ref (lib/percpu-refcount.c, include/linux/percpu-refcount.h, as of 5.3).

A percpu_ref starts in percpu mode: gets and puts touch only the local CPU's counter, and the
atomic count holds ``PERCPU_COUNT_BIAS + 1`` so that it can never reach zero while per-cpu
counters are in use.  Killing it marks it DEAD and switches it to atomic mode through
call_rcu(): after a grace period the per-cpu counters are summed into the atomic count (minus
the bias), the confirm callback runs, and the extra reference taken for the switch is put; that
put, or any later one, may find zero and call ``release`` in RCU-callback context.

The fast paths run under rcu_read_lock_sched(), which is what makes the switch safe: the
grace period cannot end between a getter reading the mode and bumping a per-cpu counter.  The
model keeps that: each get/put is a read-side section with separate mode-read and counter
accesses.  Reports: a put that takes the atomic count below zero, a sum that leaves it <= 0
(the kernel's WARN), a get that raises a zero count, any use after percpu_ref_exit() or of a
ref whose percpu_ref_init() never succeeded (a NULL per-cpu pointer), and killing a ref twice.
As in 5.3, a ref initialised without PERCPU_REF_ALLOW_REINIT frees its per-cpu counters as
soon as the switch to atomic is confirmed; gets and puts keep working on the atomic count.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from memcgsim.kernel.errno import ENOMEM
from memcgsim.kernel.heap import GFP_KERNEL, PercpuArea, alloc_percpu, free_percpu
from memcgsim.kernel.locking import (
    Spinlock,
    preempt_enable_on,
    spin_lock_irqsave,
    spin_unlock_irqrestore,
)
from memcgsim.kernel.objects import KObject, LazyMember
from memcgsim.kernel.rcu import RcuHead, call_rcu
from memcgsim.kernel.task import AccessKind
from memcgsim.kernel.violations import ViolationKind

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.task import CPU

__all__ = [
    "PERCPU_COUNT_BIAS",
    "PERCPU_REF_ALLOW_REINIT",
    "PERCPU_REF_INIT_ATOMIC",
    "PERCPU_REF_INIT_DEAD",
    "PercpuRef",
    "percpu_ref_exit",
    "percpu_ref_get",
    "percpu_ref_get_many",
    "percpu_ref_init",
    "percpu_ref_is_dying",
    "percpu_ref_is_zero",
    "percpu_ref_kill",
    "percpu_ref_kill_and_confirm",
    "percpu_ref_put",
    "percpu_ref_put_many",
    "percpu_ref_read",
    "percpu_ref_switch_lock",
    "percpu_ref_tryget",
    "percpu_ref_tryget_live",
]

BITS_PER_LONG = 64
#: 1LU << (BITS_PER_LONG - 1)
PERCPU_COUNT_BIAS = 1 << (BITS_PER_LONG - 1)

__PERCPU_REF_ATOMIC = 1 << 0
__PERCPU_REF_DEAD = 1 << 1
__PERCPU_REF_ATOMIC_DEAD = __PERCPU_REF_ATOMIC | __PERCPU_REF_DEAD

PERCPU_REF_INIT_ATOMIC = 1 << 0
PERCPU_REF_INIT_DEAD = 1 << 1
PERCPU_REF_ALLOW_REINIT = 1 << 2

ReleaseFn = Callable[["Kernel", "PercpuRef"], None]

_READ = AccessKind.READ
_RMW = AccessKind.RMW


class PercpuRef(KObject):
    """struct percpu_ref, embedded in the object it counts.

    ``percpu`` and ``flags`` together stand for ``percpu_count_ptr`` (a pointer whose low
    bits are the ATOMIC and DEAD flags): ``percpu is None`` with no flags is the NULL pointer a
    failed or never-run percpu_ref_init() leaves.
    """

    ktype = "struct percpu_ref"
    kfields = ("count", "percpu", "flags", "release", "confirm_switch", "force_atomic",
               "allow_reinit")
    #: the rcu_head the switch to atomic mode queues, made on first use (LazyMember)
    rcu: LazyMember[RcuHead] = LazyMember(lambda ref: ref._make_rcu())

    def __init__(self, owner: KObject | None = None, path: str = "refcnt") -> None:
        super().__init__()
        if owner is not None:
            self.embed(owner, path)
        else:
            self._krcu_path = f"{path}.rcu"
        #: atomic_long_t count
        self.count = 0
        self.percpu: PercpuArea | None = None
        self.flags = 0
        self.release: ReleaseFn | None = None
        self.confirm_switch: ReleaseFn | None = None
        self.force_atomic = False
        self.allow_reinit = False
        #: model bookkeeping: percpu_ref_exit() has run
        self._kexited = False

    def _make_rcu(self) -> RcuHead:
        owner = self._kowner
        path = self._krcu_path if owner is self else self._kpath + "rcu"
        head = RcuHead(owner, path)
        head.ref = self  # type: ignore[attr-defined]
        return head


def percpu_ref_switch_lock(k: Kernel) -> Spinlock:
    """The global percpu_ref_switch_lock."""
    lock: Spinlock | None = getattr(k, "_percpu_ref_switch_lock", None)
    if lock is None:
        lock = Spinlock("percpu_ref_switch_lock")
        k.heap.adopt(lock, "percpu_ref_switch_lock", static=True)
        k._percpu_ref_switch_lock = lock  # type: ignore[attr-defined]
    return lock


def percpu_ref_init(k: Kernel, ref: PercpuRef, release: ReleaseFn, flags: int = 0,
                    gfp: int = GFP_KERNEL, *, site: str | None = None) -> int:
    """percpu_ref_init(): 0, or -ENOMEM if the per-cpu counters cannot be allocated.

    On failure the per-cpu pointer stays NULL (and the ref unusable), as in the kernel.
    ``site`` names the caller for fault injection (kind ``"percpu"``).
    """
    site = site or sys._getframe(1).f_code.co_name
    area = alloc_percpu(k, "percpu_ref", site=site, gfp=gfp)
    k.store(ref, "flags", 0)
    if area is None:
        k.store(ref, "percpu", None)
        return -ENOMEM
    k.store(ref, "percpu", area)
    ref._kexited = False
    ref.force_atomic = bool(flags & PERCPU_REF_INIT_ATOMIC)
    ref.allow_reinit = bool(flags & PERCPU_REF_ALLOW_REINIT)
    start_count = 0
    rflags = 0
    if flags & (PERCPU_REF_INIT_ATOMIC | PERCPU_REF_INIT_DEAD):
        rflags |= __PERCPU_REF_ATOMIC
        ref.allow_reinit = True
    else:
        start_count += PERCPU_COUNT_BIAS
    if flags & PERCPU_REF_INIT_DEAD:
        rflags |= __PERCPU_REF_DEAD
    else:
        start_count += 1
    k.store(ref, "flags", rflags)
    k.store(ref, "count", start_count)
    ref.release = release
    ref.confirm_switch = None
    return 0


def percpu_ref_exit(k: Kernel, ref: PercpuRef) -> None:
    """percpu_ref_exit(): free the per-cpu counters; the ref must no longer be in use."""
    area = k.load(ref, "percpu")
    if area is not None:
        # A non-NULL confirm_switch means a switch is still in flight.
        if ref.confirm_switch is not None:  # (the message is built only when it fires)
            k.warn_on(True, f"percpu_ref_exit({ref.kname()}) while switching to atomic")
        free_percpu(k, area)
        k.store(ref, "percpu", None)
        k.store(ref, "flags", __PERCPU_REF_ATOMIC_DEAD)
    ref._kexited = True


def _ref_is_percpu(k: Kernel, ref: PercpuRef) -> bool:
    """__ref_is_percpu(): reads percpu_count_ptr once; ATOMIC or DEAD bits mean atomic mode."""
    k.access(ref, "percpu_count_ptr", _READ)
    if ref.flags & __PERCPU_REF_ATOMIC_DEAD:
        return False
    if ref.percpu is None:
        _report_null_percpu(k, ref)
        return False
    return True


def _report_null_percpu(k: Kernel, ref: PercpuRef) -> None:
    # The kernel would this_cpu_add() through a NULL per-cpu pointer: memory corruption.
    k.report(ViolationKind.PERCPU_REF_MISUSE,
             f"{ref.kname()} used with a NULL per-cpu counter pointer "
             + ("(after percpu_ref_exit)" if ref._kexited
                else "(percpu_ref_init() failed or never ran)"),
             obj=ref, field="percpu_count_ptr")


def _this_cpu_add(k: Kernel, ref: PercpuRef, cpu: CPU, nr: int) -> None:
    area = ref.percpu
    assert area is not None
    k.access(area, cpu.field, _RMW)
    area.counters[cpu.id] += nr


def _atomic_add(k: Kernel, ref: PercpuRef, nr: int, op: str) -> int:
    old, new = k.rmw(ref, "count", lambda c: c + nr)
    if old == 0:
        k.report(ViolationKind.REFCOUNT_GET_FROM_ZERO,
                 f"{op}: {ref.kname()} raised from 0 (its release may already have run)",
                 obj=ref, field="count")
    return int(new)


# The fast paths below run on every get and put, so they are written out flat: one fetch of
# this CPU, rcu_read_lock_sched() as preempt_count++ on it, __ref_is_percpu() and
# this_cpu_add() as two scheduling points, then preempt_enable().  The rare cases (atomic
# mode, a NULL per-cpu pointer) take the general helpers.

def _this_cpu_add_fast(k: Kernel, ref: PercpuRef, cpu: CPU, nr: int) -> bool:
    """__ref_is_percpu() then this_cpu_add(): False (nothing done) in atomic mode or on a
    NULL per-cpu pointer.  Two scheduling points; in a sequential run they are inlined (a
    step and the KASAN check each), which is all Kernel.access does there."""
    if k.preemptive:
        k.access(ref, "percpu_count_ptr", _READ)
    else:
        k.steps += 1
        if ref._kowner._kstate:
            k._bad_access(ref, "percpu_count_ptr", _READ)
    if ref.flags & __PERCPU_REF_ATOMIC_DEAD:
        return False
    area = ref.percpu
    if area is None:
        _report_null_percpu(k, ref)
        return False
    if k.preemptive:
        k.access(area, cpu.field, _RMW)
    else:
        k.steps += 1
        if area._kowner._kstate:
            k._bad_access(area, cpu.field, _RMW)
    area.counters[cpu.id] += nr
    return True


def _preempt_enable_fast(k: Kernel, cpu: CPU) -> None:
    c = cpu.preempt_count - 1
    if c < 0:
        preempt_enable_on(k, cpu)  # reports the imbalance
        return
    cpu.preempt_count = c
    if c == 0 and not cpu.rcu_nesting and not cpu.irqs_disabled:
        cpu.rcu_exits += 1
        if k.rcu.gp_waiting:
            k.rcu.note_qs(cpu)


def percpu_ref_get_many(k: Kernel, ref: PercpuRef, nr: int) -> None:
    """percpu_ref_get_many(): the caller must already hold a reference."""
    cpu = k.this_cpu
    cpu.preempt_count += 1  # rcu_read_lock_sched()
    if not _this_cpu_add_fast(k, ref, cpu, nr):
        _atomic_add(k, ref, nr, "percpu_ref_get")
    _preempt_enable_fast(k, cpu)


def percpu_ref_get(k: Kernel, ref: PercpuRef) -> None:
    percpu_ref_get_many(k, ref, 1)


def percpu_ref_tryget(k: Kernel, ref: PercpuRef) -> bool:
    """percpu_ref_tryget(): increment unless the count is zero; works on a killed ref."""
    cpu = k.this_cpu
    cpu.preempt_count += 1
    ret = True
    if not _this_cpu_add_fast(k, ref, cpu, 1):
        old, _ = k.rmw(ref, "count", lambda c: c + 1 if c != 0 else c)
        ret = old != 0
    _preempt_enable_fast(k, cpu)
    return ret


def percpu_ref_tryget_live(k: Kernel, ref: PercpuRef) -> bool:
    """percpu_ref_tryget_live(): as tryget, but fails once the ref has been killed."""
    cpu = k.this_cpu
    cpu.preempt_count += 1
    ret = True
    if not _this_cpu_add_fast(k, ref, cpu, 1):
        if not ref.flags & __PERCPU_REF_DEAD:
            old, _ = k.rmw(ref, "count", lambda c: c + 1 if c != 0 else c)
            ret = old != 0
        else:
            ret = False
    _preempt_enable_fast(k, cpu)
    return ret


def percpu_ref_put_many(k: Kernel, ref: PercpuRef, nr: int) -> None:
    """percpu_ref_put_many(): in atomic mode, the put that reaches zero calls release()."""
    cpu = k.this_cpu
    cpu.preempt_count += 1
    if not _this_cpu_add_fast(k, ref, cpu, -nr):
        _, new = k.rmw(ref, "count", lambda c: c - nr)
        if new == 0:
            assert ref.release is not None
            ref.release(k, ref)
        elif new < 0:
            k.report(ViolationKind.REFCOUNT_UNDERFLOW,
                     f"percpu_ref_put: {ref.kname()} count went negative ({new})",
                     obj=ref, field="count")
    _preempt_enable_fast(k, cpu)


def percpu_ref_put(k: Kernel, ref: PercpuRef) -> None:
    percpu_ref_put_many(k, ref, 1)


def percpu_ref_is_zero(k: Kernel, ref: PercpuRef) -> bool:
    """percpu_ref_is_zero(): never true in percpu mode."""
    if _ref_is_percpu(k, ref):
        return False
    return bool(k.load(ref, "count") == 0)


def percpu_ref_is_dying(k: Kernel, ref: PercpuRef) -> bool:
    """percpu_ref_is_dying(): killed (DEAD set)."""
    return bool(k.load(ref, "flags") & __PERCPU_REF_DEAD)


def _switch_to_atomic_rcu(k: Kernel, head: RcuHead) -> None:
    """percpu_ref_switch_to_atomic_rcu() then percpu_ref_call_confirm_rcu()."""
    ref: PercpuRef = head.ref  # type: ignore[attr-defined]
    area = k.load(ref, "percpu")
    total = 0
    if area is not None:
        for cpu in range(k.nr_cpus):
            k.access(area, f"cpu{cpu}", _READ)
            total += area.counters[cpu]
    _, new = k.rmw(ref, "count", lambda c: c + total - PERCPU_COUNT_BIAS)
    if new <= 0:
        k.report(ViolationKind.REFCOUNT_UNDERFLOW,
                 f"percpu ref ({ref.kname()}) <= 0 ({new}) after switching to atomic",
                 obj=ref, field="count")
    confirm = ref.confirm_switch
    assert confirm is not None
    confirm(k, ref)
    ref.confirm_switch = None
    # wake_up_all(&percpu_ref_switch_waitq): waiters poll confirm_switch.
    if not ref.allow_reinit:
        # 5.3 (7d9ab9b6adff): nothing will switch back, so free the per-cpu counters now.
        percpu_ref_exit(k, ref)
    # Drop the reference taken by __percpu_ref_switch_to_atomic().
    percpu_ref_put(k, ref)


def _noop_confirm_switch(k: Kernel, ref: PercpuRef) -> None:
    """percpu_ref_noop_confirm_switch()."""


def _switch_to_atomic(k: Kernel, ref: PercpuRef, confirm: ReleaseFn | None) -> None:
    """__percpu_ref_switch_to_atomic()."""
    if ref.flags & __PERCPU_REF_ATOMIC:
        if confirm is not None:
            confirm(k, ref)
        return
    k.store(ref, "flags", ref.flags | __PERCPU_REF_ATOMIC)
    # A non-NULL confirm_switch marks a switch in progress.
    ref.confirm_switch = confirm or _noop_confirm_switch
    percpu_ref_get(k, ref)  # put after confirmation
    call_rcu(k, ref.rcu, _switch_to_atomic_rcu)


def _switch_mode(k: Kernel, ref: PercpuRef, confirm: ReleaseFn | None, lock: Spinlock,
                 irqflags: bool) -> bool:
    """__percpu_ref_switch_mode(): waits for an in-flight switch, then switches."""
    if ref.confirm_switch is not None:
        # wait_event_lock_irq(percpu_ref_switch_waitq, !ref->confirm_switch, lock)
        spin_unlock_irqrestore(k, lock, irqflags)
        k.wait_event(lambda: ref.confirm_switch is None, f"percpu_ref switch of {ref.kname()}")
        irqflags = spin_lock_irqsave(k, lock)
    if ref.force_atomic or ref.flags & __PERCPU_REF_DEAD:
        _switch_to_atomic(k, ref, confirm)
    else:
        k.report(ViolationKind.BUG, "switch to percpu mode is not modelled", obj=ref)
    return irqflags


def percpu_ref_kill_and_confirm(k: Kernel, ref: PercpuRef, confirm: ReleaseFn | None) -> None:
    """percpu_ref_kill_and_confirm(): mark DEAD, switch to atomic, put the initial ref.

    ``confirm`` runs once every CPU sees the ref as killed, after a grace period, in RCU
    callback context.  There is no grace period implied between kill and release.
    """
    lock = percpu_ref_switch_lock(k)
    irqflags = spin_lock_irqsave(k, lock)
    flags = k.load(ref, "flags")
    if flags & __PERCPU_REF_DEAD:
        k.report(ViolationKind.PERCPU_REF_MISUSE,
                 f"percpu_ref_kill_and_confirm called more than once on {ref.kname()}!", obj=ref)
    k.store(ref, "flags", flags | __PERCPU_REF_DEAD)
    irqflags = _switch_mode(k, ref, confirm, lock, irqflags)
    percpu_ref_put(k, ref)
    spin_unlock_irqrestore(k, lock, irqflags)


def percpu_ref_kill(k: Kernel, ref: PercpuRef) -> None:
    """percpu_ref_kill(): percpu_ref_kill_and_confirm(ref, NULL)."""
    percpu_ref_kill_and_confirm(k, ref, None)


def percpu_ref_read(ref: PercpuRef) -> int:
    """The reference count a reader of the whole state would compute (not a kernel API).

    Percpu mode: the per-cpu sum plus the atomic count less the bias; atomic mode: the count.
    Used by checkers and reports, never by model code (it takes no scheduling point).
    """
    if ref.percpu is None:
        return int(ref.count)
    if ref.flags & __PERCPU_REF_ATOMIC_DEAD and ref.confirm_switch is None:
        return int(ref.count)
    # Percpu mode, or a switch to atomic still waiting for its grace period.
    return int(ref.count) - PERCPU_COUNT_BIAS + sum(ref.percpu.counters)


def percpu_ref_mode(ref: PercpuRef) -> str:
    """``"percpu"``, ``"atomic"``, ``"dead"`` (killed) or ``"exited"``, for reports."""
    if ref._kexited:
        return "exited"
    if ref.flags & __PERCPU_REF_DEAD:
        return "dead"
    if ref.flags & __PERCPU_REF_ATOMIC:
        return "atomic"
    return "percpu"


def percpu_ref_state(ref: PercpuRef) -> dict[str, Any]:
    return {"mode": percpu_ref_mode(ref), "count": percpu_ref_read(ref)}
