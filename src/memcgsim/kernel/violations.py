"""What the model's checkers report: KASAN, lockdep, DEBUG_LIST, refcount and accounting splats."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from dataclasses import field as dc_field

__all__ = ["KernelViolation", "Violation", "ViolationKind"]


class ViolationKind(enum.StrEnum):
    """Classes of bugs the checkers detect; values are stable identifiers used in JSON traces."""

    USE_AFTER_FREE = "use-after-free"
    DOUBLE_FREE = "double-free"
    INVALID_FREE = "invalid-free"
    UNINIT_READ = "uninit-read"
    BAD_POINTER = "bad-pointer"
    LEAK = "leak"
    REFCOUNT_UNDERFLOW = "refcount-underflow"
    REFCOUNT_GET_FROM_ZERO = "refcount-get-from-zero"
    PERCPU_REF_MISUSE = "percpu-ref-misuse"
    LIST_CORRUPTION = "list-corruption"
    DEADLOCK = "deadlock"
    LOCK_INVERSION = "lock-inversion"
    LOCK_IRQ_INCONSISTENT = "lock-irq-inconsistent"
    BAD_UNLOCK = "bad-unlock"
    SLEEP_IN_ATOMIC = "sleep-in-atomic"
    SLEEP_IN_RCU = "sleep-in-rcu"
    RCU_LOCKDEP = "rcu-lockdep"
    DEBUG_OBJECTS = "debug-objects"
    ACCOUNTING = "accounting"
    WARN = "warn"
    BUG = "bug"
    ASSERTION = "assertion"


@dataclass(frozen=True, slots=True)
class Violation:
    """One report: what went wrong, where, and at which step of which task.

    ``location`` is the model function and line that performed the access
    (``"memcg_ptr_release:57"``); ``step`` counts scheduling points since boot.
    """

    kind: ViolationKind
    message: str
    task: str = ""
    cpu: int | None = None
    step: int = 0
    obj: str = ""
    field: str = ""
    location: str = ""
    extra: dict[str, str] = dc_field(default_factory=dict)

    def __str__(self) -> str:
        where = f" at {self.location}" if self.location else ""
        who = f" [task {self.task}" + (f" cpu {self.cpu}" if self.cpu is not None else "") + "]"
        return f"{self.kind}: {self.message}{who}{where} step {self.step}"

    def to_json(self) -> dict[str, object]:
        return {
            "kind": str(self.kind),
            "message": self.message,
            "task": self.task,
            "cpu": self.cpu,
            "step": self.step,
            "object": self.obj,
            "field": self.field,
            "location": self.location,
        }


class KernelViolation(Exception):
    """Raised when a checker fires and the kernel is configured to panic on it (the default)."""

    def __init__(self, violation: Violation) -> None:
        self.violation = violation
        super().__init__(str(violation))
