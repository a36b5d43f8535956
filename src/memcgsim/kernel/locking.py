"""Spinlocks, mutexes and a lockdep-like validator (kernel/locking/).

Lockdep here keeps what the kernel's keeps, per lock *class* (a lock's name): the order in
which classes were ever taken while holding others (a cycle is a possible deadlock, reported
when the closing edge is first taken, even if this run did not deadlock), and whether a class
was ever taken in softirq context and ever taken in process context with interrupts enabled
(the inconsistent {SOFTIRQ-ON-W} -> {IN-SOFTIRQ-W} usage that deadlocks when the softirq
interrupts the holder on its own CPU).  An actual deadlock (no task can run) is caught by the
scheduler; a task re-acquiring a lock it holds is reported at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memcgsim.kernel.objects import KObject
from memcgsim.kernel.task import AccessKind, Context
from memcgsim.kernel.violations import ViolationKind

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.task import CPU, Task

__all__ = [
    "LockBase",
    "Lockdep",
    "Mutex",
    "Spinlock",
    "local_irq_disable",
    "local_irq_enable",
    "local_irq_restore",
    "local_irq_save",
    "lockdep_is_held",
    "mutex_lock",
    "mutex_trylock",
    "mutex_unlock",
    "preempt_disable",
    "preempt_enable",
    "preempt_enable_on",
    "spin_lock",
    "spin_lock_irq",
    "spin_lock_irqsave",
    "spin_unlock",
    "spin_unlock_irq",
    "spin_unlock_irqrestore",
]


#: enum members as module constants (AccessKind.X is a slow metaclass lookup)
_ACQUIRE = AccessKind.ACQUIRE
_RELEASE = AccessKind.RELEASE
_SOFTIRQ = Context.SOFTIRQ


class LockBase(KObject):
    """Common state of spinlock_t and struct mutex."""

    sleeping = False

    def __init__(self, name: str, owner: KObject | None = None, path: str = "") -> None:
        super().__init__()
        if owner is not None:
            self.embed(owner, path or name)
        #: the lockdep class: locks initialised at the same place share one
        self.name = name
        self.holder: Task | None = None
        #: statistics: scheduling points taken while held (lock_stat's hold time, in steps)
        self.held_steps = 0
        self._kacquired_at = 0

    def _klabel(self) -> str:
        return self.name


class Spinlock(LockBase):
    """spinlock_t."""

    ktype = "spinlock_t"


class Mutex(LockBase):
    """struct mutex: a sleeping lock."""

    ktype = "struct mutex"
    sleeping = True


class Lockdep:
    """Lock-class dependency graph and irq-usage state (kernel/locking/lockdep.c)."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        #: class -> classes taken while holding it
        self.after: dict[str, set[str]] = {}
        self.in_softirq: set[str] = set()
        self.softirq_on: set[str] = set()
        self.enabled = True

    def _reaches(self, src: str, dst: str) -> list[str] | None:
        """A path of classes src -> ... -> dst, if the recorded order has one."""
        stack: list[tuple[str, list[str]]] = [(src, [src])]
        seen = {src}
        while stack:
            node, path = stack.pop()
            if node == dst:
                return path
            for nxt in sorted(self.after.get(node, ())):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    def acquire(self, t: Task, lock: LockBase) -> None:
        """lock_acquire(): validate the new lock against those ``t`` holds."""
        if not self.enabled:
            return
        k = self.k
        cls = lock.name
        for held in t.held_locks:
            if held is lock:
                continue
            h = held.name
            if h == cls:
                continue  # same class nesting; lockdep would want a subclass annotation
            edges = self.after.setdefault(h, set())
            if cls in edges:
                continue
            back = self._reaches(cls, h)
            if back is not None:
                chain = " -> ".join(back)
                k.report(ViolationKind.LOCK_INVERSION,
                         f"possible circular locking dependency: {t.name} takes {cls} while "
                         f"holding {h}, but {chain} was taken before")
            edges.add(cls)
        if lock.sleeping:
            return
        cpu = k.this_cpu
        if t.context is _SOFTIRQ:
            self.in_softirq.add(cls)
            if cls in self.softirq_on:
                k.report(ViolationKind.LOCK_IRQ_INCONSISTENT,
                         f"inconsistent {{SOFTIRQ-ON-W}} -> {{IN-SOFTIRQ-W}} usage of {cls}: "
                         "taken in softirq context, and elsewhere with interrupts enabled")
        elif not cpu.irqs_disabled:
            self.softirq_on.add(cls)
            if cls in self.in_softirq:
                k.report(ViolationKind.LOCK_IRQ_INCONSISTENT,
                         f"inconsistent {{IN-SOFTIRQ-W}} -> {{SOFTIRQ-ON-W}} usage of {cls}: "
                         "taken with interrupts enabled, and elsewhere in softirq context")


def lockdep_is_held(k: Kernel, lock: LockBase) -> bool:
    """lockdep_is_held(): the current task holds ``lock``."""
    return k.current is not None and lock.holder is k.current


def preempt_disable(k: Kernel) -> None:
    k.this_cpu.preempt_count += 1


def preempt_enable(k: Kernel) -> None:
    preempt_enable_on(k, k.this_cpu)


def preempt_enable_on(k: Kernel, cpu: CPU) -> None:
    """preempt_enable() when the caller already has this CPU (``k.this_cpu``) at hand."""
    if cpu.preempt_count <= 0:
        k.report(ViolationKind.WARN, "preempt_enable() with preempt_count 0")
        return
    cpu.preempt_count -= 1
    if cpu.preempt_count == 0 and not cpu.rcu_nesting and not cpu.irqs_disabled:
        cpu.rcu_exits += 1
        if k.rcu.gp_waiting:
            k.rcu.note_qs(cpu)


def local_irq_disable(k: Kernel) -> None:
    k.this_cpu.irqs_disabled = True


def local_irq_enable(k: Kernel) -> None:
    cpu = k.this_cpu
    if cpu.irqs_disabled and not cpu.preempt_count and not cpu.rcu_nesting:
        cpu.rcu_exits += 1
    cpu.irqs_disabled = False
    k.rcu.note_qs(cpu)


def local_irq_save(k: Kernel) -> bool:
    """local_irq_save(flags): returns whether interrupts were disabled."""
    cpu = k.this_cpu
    flags = cpu.irqs_disabled
    cpu.irqs_disabled = True
    return flags


def local_irq_restore(k: Kernel, flags: bool) -> None:
    cpu = k.this_cpu
    if not flags and cpu.irqs_disabled and not cpu.preempt_count and not cpu.rcu_nesting:
        cpu.rcu_exits += 1
    cpu.irqs_disabled = flags
    if not flags and k.rcu.gp_waiting:
        k.rcu.note_qs(cpu)


def _acquire(k: Kernel, lock: LockBase) -> None:
    t = k.current
    if t is None:
        raise RuntimeError(f"taking {lock.name} outside any task")
    k.point(lock, "holder", _ACQUIRE)
    if lock.holder is t:
        k.report(ViolationKind.DEADLOCK,
                 f"possible recursive locking detected: {t.name} takes {lock.name} it already holds",
                 obj=lock)
        return
    k.lockdep.acquire(t, lock)
    while lock.holder is not None:
        # Spin (spinlock: keeps the CPU) or sleep (mutex) until the holder releases it,
        # then retry the acquisition as a step of its own.
        holder = lock.holder.name
        k.wait_event(lambda: lock.holder is None, f"{lock.name} (held by {holder})",
                     sleep=lock.sleeping)
        k.point(lock, "holder", _ACQUIRE)
    if lock._kowner._kstate:
        k._bad_access(lock, "holder", _ACQUIRE)
    lock.holder = t
    lock._kacquired_at = k.steps
    t.held_locks.append(lock)


def _release(k: Kernel, lock: LockBase) -> None:
    t = k.current
    k.point(lock, "holder", _RELEASE)
    if lock._kowner._kstate:
        k._bad_access(lock, "holder", _RELEASE)
    if t is None or lock.holder is not t:
        who = lock.holder.name if lock.holder else "nobody"
        k.report(ViolationKind.BAD_UNLOCK,
                 f"bad unlock balance: {t.name if t else '-'} releases {lock.name} held by {who}",
                 obj=lock)
        return
    lock.holder = None
    lock.held_steps += k.steps - lock._kacquired_at
    t.held_locks.remove(lock)


def spin_lock(k: Kernel, lock: Spinlock) -> None:
    """spin_lock(): disable preemption, then spin until the lock is ours."""
    preempt_disable(k)
    _acquire(k, lock)


def spin_unlock(k: Kernel, lock: Spinlock) -> None:
    """spin_unlock()."""
    _release(k, lock)
    preempt_enable(k)


def spin_lock_irq(k: Kernel, lock: Spinlock) -> None:
    """spin_lock_irq(): interrupts off (unconditionally back on at spin_unlock_irq)."""
    local_irq_disable(k)
    spin_lock(k, lock)


def spin_unlock_irq(k: Kernel, lock: Spinlock) -> None:
    spin_unlock(k, lock)
    local_irq_enable(k)


def spin_lock_irqsave(k: Kernel, lock: Spinlock) -> bool:
    """spin_lock_irqsave(lock, flags): returns the saved interrupt state."""
    flags = local_irq_save(k)
    spin_lock(k, lock)
    return flags


def spin_unlock_irqrestore(k: Kernel, lock: Spinlock, flags: bool) -> None:
    spin_unlock(k, lock)
    local_irq_restore(k, flags)


def mutex_lock(k: Kernel, lock: Mutex) -> None:
    """mutex_lock(): might sleep; sleeps while another task holds it."""
    if not k.can_sleep():
        k.might_sleep(f"mutex_lock({lock.name})")
    _acquire(k, lock)


def mutex_unlock(k: Kernel, lock: Mutex) -> None:
    _release(k, lock)


def mutex_trylock(k: Kernel, lock: Mutex) -> bool:
    """mutex_trylock(): take the mutex if it is free; never sleeps."""
    t = k.current
    if t is None:
        raise RuntimeError(f"taking {lock.name} outside any task")
    k.point(lock, "holder", _ACQUIRE)
    if lock.holder is not None:
        return False
    k.lockdep.acquire(t, lock)
    lock.holder = t
    lock._kacquired_at = k.steps
    t.held_locks.append(lock)
    return True
