"""Spinlocks and mutexes with the lockdep-like checks: deadlock, inversion, irq state, sleeping."""

from __future__ import annotations

import pytest

from memcgsim import Kernel, KernelViolation, ViolationKind
from memcgsim.kernel.locking import (
    Mutex,
    Spinlock,
    mutex_lock,
    mutex_unlock,
    spin_lock,
    spin_lock_irq,
    spin_lock_irqsave,
    spin_unlock,
    spin_unlock_irq,
    spin_unlock_irqrestore,
)
from memcgsim.kernel.rcu import RcuHead, call_rcu
from memcgsim.kernel.task import TaskState
from tests.conftest import RefObj


def _locks(k: Kernel, *names: str, cls: type = Spinlock) -> list:  # type: ignore[type-arg]
    out = []
    for n in names:
        lk = cls(n)
        k.heap.adopt(lk, "test", static=True)
        out.append(lk)
    return out


def test_spinlock_serialises_two_cpus(bare: Kernel) -> None:
    (lock,) = _locks(bare, "lock")
    trace: list[str] = []
    flag = {"go": False}

    def holder(k: Kernel) -> None:
        spin_lock(k, lock)
        trace.append("holder in")
        k.wait_event(lambda: flag["go"], "go", sleep=False)
        trace.append("holder out")
        spin_unlock(k, lock)

    def contender(k: Kernel) -> None:
        spin_lock(k, lock)
        trace.append("contender in")
        spin_unlock(k, lock)

    h = bare.spawn(holder, name="holder", cpu=0)
    bare.run(until=lambda: h.state is TaskState.WAITING)
    c = bare.spawn(contender, name="contender", cpu=1)
    bare.run(max_steps=100)
    assert c.state is TaskState.WAITING and "contender in" not in trace
    flag["go"] = True
    bare.settle()
    assert trace == ["holder in", "holder out", "contender in"]


def test_abba_deadlock_is_detected(bare: Kernel) -> None:
    a, b = _locks(bare, "A", "B", cls=Mutex)
    bare.lockdep.enabled = False  # let it actually deadlock
    flag = {"n": 0}

    def ab(k: Kernel) -> None:
        mutex_lock(k, a)
        flag["n"] += 1
        k.wait_event(lambda: flag["n"] == 2, "both hold one")
        mutex_lock(k, b)

    def ba(k: Kernel) -> None:
        mutex_lock(k, b)
        flag["n"] += 1
        k.wait_event(lambda: flag["n"] == 2, "both hold one")
        mutex_lock(k, a)

    bare.spawn(ab, name="t1", cpu=0)
    bare.spawn(ba, name="t2", cpu=1)
    with pytest.raises(KernelViolation) as ei:
        bare.settle()
    v = ei.value.violation
    assert v.kind is ViolationKind.DEADLOCK
    assert "t1 waits for B" in v.message and "t2 waits for A" in v.message


def test_lock_order_inversion_is_reported_without_deadlocking(bare: Kernel) -> None:
    a, b = _locks(bare, "A", "B")

    def ab(k: Kernel) -> None:
        spin_lock(k, a)
        spin_lock(k, b)
        spin_unlock(k, b)
        spin_unlock(k, a)

    def ba(k: Kernel) -> None:
        spin_lock(k, b)
        spin_lock(k, a)

    bare.call(ab)
    with pytest.raises(KernelViolation) as ei:
        bare.call(ba)
    assert ei.value.violation.kind is ViolationKind.LOCK_INVERSION
    assert "A" in ei.value.violation.message and "B" in ei.value.violation.message


def test_recursive_spinlock_is_reported(bare: Kernel) -> None:
    (a,) = _locks(bare, "A")

    def body(k: Kernel) -> None:
        spin_lock(k, a)
        spin_lock(k, a)

    with pytest.raises(KernelViolation) as ei:
        bare.call(body)
    assert ei.value.violation.kind is ViolationKind.DEADLOCK


def test_mutex_under_spinlock_is_sleeping_in_atomic(bare: Kernel) -> None:
    (s,) = _locks(bare, "s")
    (m,) = _locks(bare, "m", cls=Mutex)

    def body(k: Kernel) -> None:
        spin_lock(k, s)
        mutex_lock(k, m)

    with pytest.raises(KernelViolation) as ei:
        bare.call(body)
    assert ei.value.violation.kind is ViolationKind.SLEEP_IN_ATOMIC
    assert "holding s" in ei.value.violation.message


def test_irq_variants_restore_interrupt_state(bare: Kernel) -> None:
    (s,) = _locks(bare, "s")

    def body(k: Kernel) -> tuple[bool, bool, bool]:
        spin_lock_irq(k, s)
        inside = k.this_cpu.irqs_disabled
        spin_unlock_irq(k, s)
        after = k.this_cpu.irqs_disabled
        flags = spin_lock_irqsave(k, s)
        spin_unlock_irqrestore(k, s, flags)
        return inside, after, k.this_cpu.irqs_disabled

    assert bare.call(body) == (True, False, False)


def test_lock_taken_in_softirq_and_with_irqs_enabled_is_inconsistent(bare: Kernel) -> None:
    (s,) = _locks(bare, "css_set_lock")
    o = RefObj()
    bare.heap.adopt(o, "test")
    head = RcuHead(o, "rcu")

    def in_callback(k: Kernel, _h: RcuHead) -> None:
        flags = spin_lock_irqsave(k, s)
        spin_unlock_irqrestore(k, s, flags)

    bare.call(lambda k: call_rcu(k, head, in_callback))
    bare.settle()

    def careless(k: Kernel) -> None:
        spin_lock(k, s)  # interrupts on: a softirq on this CPU could deadlock on it
        spin_unlock(k, s)

    with pytest.raises(KernelViolation) as ei:
        bare.call(careless)
    assert ei.value.violation.kind is ViolationKind.LOCK_IRQ_INCONSISTENT


def test_unlock_by_non_owner_is_reported(bare: Kernel) -> None:
    (m,) = _locks(bare, "m", cls=Mutex)
    flag = {"go": False}

    def owner(k: Kernel) -> None:
        mutex_lock(k, m)
        k.wait_event(lambda: flag["go"], "go")
        mutex_unlock(k, m)

    o = bare.spawn(owner, name="owner", cpu=0)
    bare.run(until=lambda: o.state is TaskState.WAITING)
    with pytest.raises(KernelViolation) as ei:
        bare.call(lambda k: mutex_unlock(k, m), name="thief", cpu=1)
    assert ei.value.violation.kind is ViolationKind.BAD_UNLOCK


def test_returning_with_a_lock_held_is_reported(bare: Kernel) -> None:
    (m,) = _locks(bare, "m", cls=Mutex)
    with pytest.raises(KernelViolation) as ei:
        bare.call(lambda k: mutex_lock(k, m))
    assert ei.value.violation.kind is ViolationKind.BAD_UNLOCK
