"""Heap: KASAN-like states, double free, uninitialised reads and the kmemleak-style scan."""

from __future__ import annotations

import pytest

from memcgsim import Kernel, KernelViolation, ViolationKind
from memcgsim.kernel.heap import kfree, kfree_rcu, kmalloc, kzalloc
from memcgsim.kernel.objects import KState
from memcgsim.kernel.rcu import RcuHead, rcu_read_lock, rcu_read_unlock
from memcgsim.kernel.task import TaskState
from tests.conftest import RefObj


class Node(RefObj):
    ktype = "struct node"
    kfields = ("value",)

    def __init__(self) -> None:
        super().__init__()
        self.rcu = RcuHead(self, "rcu")
        self.next: Node | None = None


def test_use_after_free_names_object_field_task_and_step(bare: Kernel) -> None:
    def body(k: Kernel) -> None:
        n = kzalloc(k, Node)
        assert n is not None
        kfree(k, n)
        k.load(n, "value")

    with pytest.raises(KernelViolation) as ei:
        bare.call(body, name="culprit")
    v = ei.value.violation
    assert v.kind is ViolationKind.USE_AFTER_FREE
    assert "node#" in v.obj and v.field == "value"
    assert v.task == "culprit"
    assert v.step > 0
    assert "body" in v.location
    assert "freed by culprit" in v.message


def test_double_free_is_reported(bare: Kernel) -> None:
    def body(k: Kernel) -> None:
        n = kzalloc(k, Node)
        kfree(k, n)
        kfree(k, n)

    with pytest.raises(KernelViolation) as ei:
        bare.call(body)
    assert ei.value.violation.kind is ViolationKind.DOUBLE_FREE


def test_kmalloc_fields_are_uninitialised_until_written(bare: Kernel) -> None:
    def body(k: Kernel) -> None:
        n = kmalloc(k, Node)
        assert n is not None
        k.store(n, "value", 3)
        assert k.load(n, "value") == 3
        m = kmalloc(k, Node)
        k.load(m, "value")  # type: ignore[arg-type]

    with pytest.raises(KernelViolation) as ei:
        bare.call(body)
    assert ei.value.violation.kind is ViolationKind.UNINIT_READ


def test_kfree_rcu_keeps_object_valid_for_readers_until_grace_period(bare: Kernel) -> None:
    n = bare.call(lambda k: kzalloc(k, Node))
    assert n is not None
    flag = {"go": False}

    def reader(k: Kernel) -> int:
        rcu_read_lock(k)
        k.wait_event(lambda: flag["go"], "go", sleep=False)
        v = k.load(n, "value")
        rcu_read_unlock(k)
        return int(v)

    r = bare.spawn(reader, name="reader", cpu=1)
    bare.run(until=lambda: r.state is TaskState.WAITING)
    bare.call(lambda k: kfree_rcu(k, n, "rcu"), cpu=0)
    bare.run(max_steps=500)
    assert n._kstate is KState.ALIVE
    flag["go"] = True
    bare.settle()
    assert r.exc is None
    assert n._kstate is KState.FREED


def test_plain_kfree_under_a_reader_is_use_after_free(bare: Kernel) -> None:
    n = bare.call(lambda k: kzalloc(k, Node))
    flag = {"go": False}

    def reader(k: Kernel) -> None:
        rcu_read_lock(k)
        k.wait_event(lambda: flag["go"], "go", sleep=False)
        k.load(n, "value")
        rcu_read_unlock(k)

    r = bare.spawn(reader, name="reader", cpu=1)
    bare.run(until=lambda: r.state is TaskState.WAITING)
    bare.call(lambda k: kfree(k, n), cpu=0)
    flag["go"] = True
    with pytest.raises(KernelViolation) as ei:
        bare.settle()
    assert ei.value.violation.kind is ViolationKind.USE_AFTER_FREE
    assert ei.value.violation.task == "reader"


def test_leak_scan_reports_unreachable_allocations(bare: Kernel) -> None:
    held = bare.call(lambda k: kzalloc(k, Node))
    assert held is not None
    bare.heap.roots[held._koid] = held

    def body(k: Kernel) -> None:
        child = kzalloc(k, Node)
        held.next = child  # reachable through a root
        kzalloc(k, Node)  # dropped on the floor

    bare.call(body)
    leaked = bare.heap.unreachable()
    assert len(leaked) == 1 and leaked[0] is not held.next
    with pytest.raises(KernelViolation) as ei:
        bare.heap.check_leaks()
    assert ei.value.violation.kind is ViolationKind.LEAK


def test_allocation_fails_when_failslab_says_so(bare: Kernel) -> None:
    bare.faults.add("slab", site="grab", nth=2)

    def grab(k: Kernel) -> list[bool]:
        return [kzalloc(k, Node) is not None for _ in range(3)]

    assert bare.call(grab) == [True, False, True]


def test_unknown_kernel_option_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown Kernel option 'nr_cpu'"):
        Kernel(nr_cpu=4)
    with pytest.raises(ValueError, match="nr_cpus must be at least 1"):
        Kernel(nr_cpus=0)
