"""RCU: grace periods wait for pre-existing readers only; callbacks run after them, in order."""

from __future__ import annotations

import pytest

from memcgsim import Kernel, KernelViolation, ViolationKind
from memcgsim.kernel.rcu import (
    RcuHead,
    call_rcu,
    rcu_barrier,
    rcu_dereference,
    rcu_read_lock,
    rcu_read_unlock,
    synchronize_rcu,
)
from memcgsim.kernel.task import TaskState
from tests.conftest import RefObj


def _reader(flag: dict[str, bool], key: str, log: list[str]):  # type: ignore[no-untyped-def]
    def body(k: Kernel) -> None:
        rcu_read_lock(k)
        log.append(f"{key} in")
        # Spin (not sleep) inside the read section until told to leave.
        k.wait_event(lambda: flag[key], f"{key} released", sleep=False)
        log.append(f"{key} out")
        rcu_read_unlock(k)

    return body


def test_grace_period_waits_for_preexisting_readers_only(bare: Kernel) -> None:
    flag = {"r1": False, "r2": False}
    log: list[str] = []
    r1 = bare.spawn(_reader(flag, "r1", log), name="r1", cpu=1)
    bare.run(until=lambda: r1.state is TaskState.WAITING)

    def writer(k: Kernel) -> None:
        synchronize_rcu(k)
        log.append("gp done")

    w = bare.spawn(writer, name="writer", cpu=0)
    bare.run(until=lambda: w.state is TaskState.WAITING and bare.rcu.gp_seq % 2 == 1)
    # The grace period has started while r1 was reading; r2 starts reading afterwards on the
    # CPU the sleeping writer left free.
    r2 = bare.spawn(_reader(flag, "r2", log), name="r2", cpu=0)
    bare.run(until=lambda: r2.state is TaskState.WAITING)
    bare.run(max_steps=200)
    assert "gp done" not in log  # still waiting for r1
    flag["r1"] = True
    bare.run(until=lambda: "gp done" in log)
    assert "r2 out" not in log  # the grace period did not wait for the later reader
    flag["r2"] = True
    bare.settle()
    assert log.index("r1 out") < log.index("gp done")


def test_callbacks_run_after_a_grace_period_in_queueing_order(bare: Kernel) -> None:
    objs = [RefObj() for _ in range(4)]
    for o in objs:
        bare.heap.adopt(o, "test")
    heads = [RcuHead(o, "rcu") for o in objs]
    order: list[int] = []
    flag = {"r": False}
    log: list[str] = []
    reader = bare.spawn(_reader(flag, "r", log), name="reader", cpu=1)
    bare.run(until=lambda: reader.state is TaskState.WAITING)

    def queue(k: Kernel) -> None:
        for i, h in enumerate(heads):
            call_rcu(k, h, lambda k, _h, i=i: order.append(i))

    bare.call(queue, cpu=0)
    bare.run(max_steps=500)
    assert order == []  # the reader that predates the callbacks is still inside
    flag["r"] = True
    bare.settle()
    assert order == [0, 1, 2, 3]


def test_rcu_barrier_waits_for_queued_callbacks(bare: Kernel) -> None:
    o = RefObj()
    bare.heap.adopt(o, "test")
    head = RcuHead(o, "rcu")
    done: list[str] = []

    def body(k: Kernel) -> None:
        call_rcu(k, head, lambda k, _h: done.append("cb"))
        rcu_barrier(k)
        done.append("barrier")

    bare.call(body)
    assert done == ["cb", "barrier"]


def test_double_call_rcu_is_reported(bare: Kernel) -> None:
    o = RefObj()
    bare.heap.adopt(o, "test")
    head = RcuHead(o, "rcu")

    def body(k: Kernel) -> None:
        call_rcu(k, head, lambda k, _h: None)
        call_rcu(k, head, lambda k, _h: None)

    with pytest.raises(KernelViolation) as ei:
        bare.call(body)
    assert ei.value.violation.kind is ViolationKind.DEBUG_OBJECTS


def test_synchronize_rcu_inside_read_section_is_reported(bare: Kernel) -> None:
    def body(k: Kernel) -> None:
        rcu_read_lock(k)
        synchronize_rcu(k)

    with pytest.raises(KernelViolation) as ei:
        bare.call(body)
    assert ei.value.violation.kind is ViolationKind.SLEEP_IN_RCU


def test_rcu_dereference_outside_read_section_is_reported(bare: Kernel) -> None:
    o = RefObj()
    bare.heap.adopt(o, "test")
    with pytest.raises(KernelViolation) as ei:
        bare.call(lambda k: rcu_dereference(k, o, "value"))
    assert ei.value.violation.kind is ViolationKind.RCU_LOCKDEP


def test_unbalanced_rcu_read_unlock_is_reported(bare: Kernel) -> None:
    with pytest.raises(KernelViolation) as ei:
        bare.call(rcu_read_unlock)
    assert ei.value.violation.kind is ViolationKind.RCU_LOCKDEP
