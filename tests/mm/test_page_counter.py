"""page_counter: hierarchical charge, limits with failcnt and rollback, watermark, underflow."""

from __future__ import annotations

import pytest

from memcgsim import Kernel, KernelViolation, ViolationKind
from memcgsim.kernel.objects import KObject
from memcgsim.mm.page_counter import (
    PageCounter,
    page_counter_charge,
    page_counter_init,
    page_counter_set_max,
    page_counter_try_charge,
    page_counter_uncharge,
)


class Holder(KObject):
    ktype = "struct holder"

    def __init__(self) -> None:
        super().__init__()
        self.memory = PageCounter(self, "memory")


def _chain(k: Kernel) -> tuple[PageCounter, PageCounter, PageCounter]:
    root, mid, leaf = (k.heap.adopt(Holder(), "test").memory for _ in range(3))
    page_counter_init(root, None)
    page_counter_init(mid, root)
    page_counter_init(leaf, mid)
    return root, mid, leaf


def test_charge_goes_up_the_hierarchy_and_sets_watermarks(bare: Kernel) -> None:
    root, mid, leaf = _chain(bare)
    bare.call(lambda k: page_counter_charge(k, leaf, 5))
    bare.call(lambda k: page_counter_uncharge(k, leaf, 3))
    assert (leaf.usage, mid.usage, root.usage) == (2, 2, 2)
    assert (leaf.watermark, mid.watermark, root.watermark) == (5, 5, 5)


def test_try_charge_fails_at_the_limited_level_and_rolls_back(bare: Kernel) -> None:
    root, mid, leaf = _chain(bare)
    assert bare.call(lambda k: page_counter_set_max(k, mid, 4)) == 0
    ok, fail = bare.call(lambda k: page_counter_try_charge(k, leaf, 3))
    assert ok and fail is None
    ok, fail = bare.call(lambda k: page_counter_try_charge(k, leaf, 2))
    assert not ok and fail is mid
    assert (leaf.usage, mid.usage, root.usage) == (3, 3, 3)
    assert (leaf.failcnt, mid.failcnt, root.failcnt) == (0, 1, 0)


def test_set_max_below_usage_is_ebusy(bare: Kernel) -> None:
    _, _, leaf = _chain(bare)
    bare.call(lambda k: page_counter_charge(k, leaf, 5))
    assert bare.call(lambda k: page_counter_set_max(k, leaf, 4)) == -16


def test_uncharge_below_zero_warns(bare: Kernel) -> None:
    _, _, leaf = _chain(bare)
    with pytest.raises(KernelViolation) as ei:
        bare.call(lambda k: page_counter_uncharge(k, leaf, 1))
    assert ei.value.violation.kind is ViolationKind.ACCOUNTING
    assert "underflow" in ei.value.violation.message
