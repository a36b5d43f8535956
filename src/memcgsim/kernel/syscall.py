"""System calls of simulated user processes, run in the foreground.

On a real machine a shell command's system call is over in microseconds, long before the
kernel's deferred work (grace periods, RCU callbacks, work items) has run: ``rmdir`` followed at
once by ``cat cgroup.stat`` still shows the cgroup dying.  The sequential scheduler would
instead run the lowest-numbered runnable task first, which is a kthread.  :func:`do_syscall`
runs a call with a chooser that prefers the calling task whenever it can run, so background
work proceeds only while the call waits (for a lock, for a grace period) or when simulated
time is let pass (:meth:`Kernel.advance_clock`, :meth:`Kernel.settle`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Chooser, Kernel
    from memcgsim.kernel.task import Task

__all__ = ["ForegroundChooser", "do_syscall"]

T = TypeVar("T")


class ForegroundChooser:
    """A chooser that picks ``task`` when it is runnable and defers to ``inner`` otherwise."""

    def __init__(self, inner: Chooser, task: Task) -> None:
        self.inner = inner
        self.task = task

    def pick_task(self, k: Kernel, runnable: list[Task]) -> Task:
        if self.task in runnable:
            return self.task
        return self.inner.pick_task(k, runnable)

    def decide(self, k: Kernel, what: str, probability: float) -> bool:
        return self.inner.decide(k, what, probability)


def do_syscall(k: Kernel, task: Task, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(k, *args)`` as ``task``'s system call, in the foreground; its result, or
    whatever it raised (KernelError for a failed call)."""
    saved = k.chooser
    k.chooser = ForegroundChooser(saved, task)
    try:
        return k.call(fn, *args, task=task)
    finally:
        k.chooser = saved
