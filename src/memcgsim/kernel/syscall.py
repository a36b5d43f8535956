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

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from memcgsim.kernel.task import TaskState

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Chooser, Kernel
    from memcgsim.kernel.task import Task

__all__ = ["ForegroundChooser", "do_syscall", "do_syscalls_parallel", "exit_to_user_mode"]

T = TypeVar("T")


class ForegroundChooser:
    """A chooser that picks one of ``tasks`` (the first runnable, in their order) when it
    can, and defers to ``inner`` otherwise."""

    def __init__(self, inner: Chooser, tasks: Sequence[Task]) -> None:
        self.inner = inner
        self.tasks = list(tasks)

    def pick_task(self, k: Kernel, runnable: list[Task]) -> Task:
        for t in self.tasks:
            if t in runnable:
                return t
        return self.inner.pick_task(k, runnable)

    def decide(self, k: Kernel, what: str, probability: float) -> bool:
        return self.inner.decide(k, what, probability)


def do_syscall(k: Kernel, task: Task, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(k, *args)`` as ``task``'s system call, in the foreground; its result, or
    whatever it raised (KernelError for a failed call)."""
    saved = k.chooser
    k.chooser = ForegroundChooser(saved, [task])
    try:
        result: T = k.call(_syscall, fn, *args, task=task)
        return result
    finally:
        k.chooser = saved


def _syscall(k: Kernel, fn: Callable[..., T], *args: Any) -> T:
    """The system call, then the return to user mode (also after a failed call)."""
    try:
        return fn(k, *args)
    finally:
        exit_to_user_mode(k)


def exit_to_user_mode(k: Kernel) -> None:
    """exit_to_user_mode() / resume_user_mode_work(): the notify-resume work a system call
    left for the task; here memcg's memory.high reclaim (mem_cgroup_handle_over_high() of
    :mod:`memcgsim.mm.vmscan`, 5.3's: no penalty sleep)."""
    t = k.current
    if t is not None and t.memcg_nr_pages_over_high:
        from memcgsim.mm.vmscan import mem_cgroup_handle_over_high

        mem_cgroup_handle_over_high(k)


def do_syscalls_parallel(k: Kernel, jobs: Sequence[tuple[Task, Callable[[Kernel], Any]]]
                         ) -> list[Any]:
    """Start each ``fn(k)`` in its task at once (threads of a process on their CPUs) and run
    in the foreground until all are done; their results in order, or the first exception."""
    saved = k.chooser
    started = [k.spawn(_syscall, fn, task=t) for t, fn in jobs]
    k.chooser = ForegroundChooser(saved, started)
    try:
        k.run(until=lambda: all(t.state in (TaskState.IDLE, TaskState.DONE) for t in started))
    finally:
        k.chooser = saved
    for t in started:
        if t.state not in (TaskState.IDLE, TaskState.DONE):
            raise RuntimeError(f"{t.name} did not finish: {t.wait_reason}")
        if t.exc is not None:
            raise t.exc
    return [t.result for t in started]
