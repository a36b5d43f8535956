"""Workqueues: items run in order on the queueing CPU's kworker; rcu_work waits a grace period."""

from __future__ import annotations

from memcgsim import Kernel
from memcgsim.kernel.objects import KObject
from memcgsim.kernel.workqueue import (
    RcuWork,
    WorkStruct,
    alloc_workqueue,
    flush_workqueue,
    queue_rcu_work,
    queue_work,
)


class Job(KObject):
    ktype = "struct job"

    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__()
        self.name = name
        self.log = log
        self.work = WorkStruct(self, "work", _run)
        self.rwork = RcuWork(self, "rwork", _run_rcu)


def _run(k: Kernel, work: WorkStruct) -> None:
    job = work.kowner
    assert isinstance(job, Job)
    t = k.current
    job.log.append(f"{job.name}@{t.name if t else '-'}")


def _run_rcu(k: Kernel, work: WorkStruct) -> None:
    job = work.kowner
    assert isinstance(job, Job)
    job.log.append(f"{job.name} after gp {k.rcu.nr_gps}")


def test_items_run_in_queueing_order_on_the_local_cpu(bare: Kernel) -> None:
    wq = alloc_workqueue(bare, "test_wq")
    log: list[str] = []
    jobs = [bare.heap.adopt(Job(f"j{i}", log), "test") for i in range(3)]

    def body(k: Kernel) -> list[bool]:
        return [queue_work(k, wq, j.work) for j in jobs]

    assert bare.call(body, cpu=1) == [True, True, True]
    assert log == []
    bare.settle()
    assert log == ["j0@kworker/1:test_wq", "j1@kworker/1:test_wq", "j2@kworker/1:test_wq"]


def test_queueing_a_pending_item_again_returns_false(bare: Kernel) -> None:
    wq = alloc_workqueue(bare, "test_wq")
    log: list[str] = []
    job = bare.heap.adopt(Job("j", log), "test")
    assert bare.call(lambda k: [queue_work(k, wq, job.work), queue_work(k, wq, job.work)]) == [
        True, False]
    bare.settle()
    assert log == ["j@kworker/0:test_wq"]


def test_rcu_work_runs_after_a_grace_period(bare: Kernel) -> None:
    wq = alloc_workqueue(bare, "test_wq")
    log: list[str] = []
    job = bare.heap.adopt(Job("j", log), "test")
    gps = bare.rcu.nr_gps

    def body(k: Kernel) -> None:
        queue_rcu_work(k, wq, job.rwork)
        flush_workqueue(k, wq)

    bare.call(body)
    bare.settle()
    assert log == [f"j after gp {gps + 1}"]
