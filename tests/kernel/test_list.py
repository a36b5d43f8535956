"""list_head operations and CONFIG_DEBUG_LIST corruption checks."""

from __future__ import annotations

import pytest

from memcgsim import Kernel, KernelViolation, ViolationKind
from memcgsim.kernel.list import (
    INIT_LIST_HEAD,
    ListHead,
    list_add,
    list_add_tail,
    list_del,
    list_empty,
    list_entries,
    list_for_each_entry,
    list_splice,
    list_splice_init,
)
from memcgsim.kernel.objects import LIST_POISON1, KObject


class Item(KObject):
    ktype = "struct item"

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.list = ListHead(self, "list")


def _items(k: Kernel, *names: str) -> list[Item]:
    return [k.heap.adopt(Item(n), "test") for n in names]


def _head(k: Kernel) -> ListHead:
    return k.heap.adopt(ListHead(), "test", static=True)


def test_add_tail_and_iterate_in_order(bare: Kernel) -> None:
    head = _head(bare)
    a, b, c = _items(bare, "a", "b", "c")

    def body(k: Kernel) -> list[str]:
        INIT_LIST_HEAD(k, head)
        for it in (a, b, c):
            list_add_tail(k, it.list, head)
        return [it.name for it in list_for_each_entry(k, head)]

    assert bare.call(body) == ["a", "b", "c"]


def test_list_add_is_stack_order_and_del_poisons(bare: Kernel) -> None:
    head = _head(bare)
    a, b = _items(bare, "a", "b")

    def body(k: Kernel) -> list[str]:
        list_add(k, a.list, head)
        list_add(k, b.list, head)
        list_del(k, a.list)
        return [it.name for it in list_for_each_entry(k, head)]

    assert bare.call(body) == ["b"]
    assert a.list.next is LIST_POISON1


def test_double_list_del_is_corruption(bare: Kernel) -> None:
    head = _head(bare)
    (a,) = _items(bare, "a")

    def body(k: Kernel) -> None:
        list_add(k, a.list, head)
        list_del(k, a.list)
        list_del(k, a.list)

    with pytest.raises(KernelViolation) as ei:
        bare.call(body)
    assert ei.value.violation.kind is ViolationKind.LIST_CORRUPTION
    assert "LIST_POISON1" in ei.value.violation.message


def test_double_add_is_corruption(bare: Kernel) -> None:
    head = _head(bare)
    (a,) = _items(bare, "a")

    def body(k: Kernel) -> None:
        list_add(k, a.list, head)
        list_add(k, a.list, head)

    with pytest.raises(KernelViolation) as ei:
        bare.call(body)
    assert ei.value.violation.kind is ViolationKind.LIST_CORRUPTION


def test_splice_moves_entries_and_leaves_source_stale(bare: Kernel) -> None:
    src, dst = _head(bare), _head(bare)
    a, b, c = _items(bare, "a", "b", "c")

    def body(k: Kernel) -> None:
        list_add_tail(k, a.list, src)
        list_add_tail(k, b.list, src)
        list_add_tail(k, c.list, dst)
        list_splice(k, src, dst)

    bare.call(body)
    assert [it.name for it in list_entries(dst)] == ["a", "b", "c"]
    # list_splice() does not reinitialise the source: it still points into dst's list.
    assert src.next is a.list
    assert not bare.call(lambda k: list_empty(k, src))


def test_splice_init_reinitialises_source(bare: Kernel) -> None:
    src, dst = _head(bare), _head(bare)
    (a,) = _items(bare, "a")

    def body(k: Kernel) -> bool:
        list_add_tail(k, a.list, src)
        list_splice_init(k, src, dst)
        return list_empty(k, src)

    assert bare.call(body) is True
    assert [it.name for it in list_entries(dst)] == ["a"]


def test_walking_into_a_deleted_entry_faults(bare: Kernel) -> None:
    head = _head(bare)
    a, b = _items(bare, "a", "b")

    def body(k: Kernel) -> None:
        list_add_tail(k, a.list, head)
        list_add_tail(k, b.list, head)
        it = list_for_each_entry(k, head)
        next(it)  # at a
        list_del(k, a.list)  # deleted under the walker's feet
        list(it)

    with pytest.raises(KernelViolation) as ei:
        bare.call(body)
    assert ei.value.violation.kind is ViolationKind.BAD_POINTER
