"""percpu_ref: modes, kill and confirm, tryget semantics, and the misuse it must report."""

from __future__ import annotations

import pytest

from memcgsim import Kernel, KernelViolation, ViolationKind
from memcgsim.kernel.heap import kmalloc
from memcgsim.kernel.percpu_ref import (
    PERCPU_COUNT_BIAS,
    PercpuRef,
    percpu_ref_get,
    percpu_ref_init,
    percpu_ref_is_dying,
    percpu_ref_is_zero,
    percpu_ref_kill,
    percpu_ref_kill_and_confirm,
    percpu_ref_mode,
    percpu_ref_put,
    percpu_ref_read,
    percpu_ref_tryget,
    percpu_ref_tryget_live,
)
from tests.conftest import RefObj


def _release(k: Kernel, ref: PercpuRef) -> None:
    obj = ref.kowner
    assert isinstance(obj, RefObj)
    t = k.current
    assert t is not None
    obj.released_by.append((t.name, t.context.value))


def _new(k: Kernel) -> RefObj:
    def body(k: Kernel) -> RefObj:
        obj = kmalloc(k, RefObj)
        assert obj is not None
        assert percpu_ref_init(k, obj.refcnt, _release) == 0
        return obj

    return k.call(body)


def test_init_is_percpu_mode_with_bias(bare: Kernel) -> None:
    obj = _new(bare)
    assert percpu_ref_mode(obj.refcnt) == "percpu"
    assert obj.refcnt.count == PERCPU_COUNT_BIAS + 1
    assert percpu_ref_read(obj.refcnt) == 1


def test_no_release_in_percpu_mode_even_when_net_count_is_zero(bare: Kernel) -> None:
    obj = _new(bare)

    def churn(k: Kernel) -> bool:
        percpu_ref_get(k, obj.refcnt)
        percpu_ref_put(k, obj.refcnt)
        percpu_ref_put(k, obj.refcnt)  # drops the initial reference too
        return percpu_ref_is_zero(k, obj.refcnt)

    assert bare.call(churn, cpu=1) is False
    bare.settle()
    assert obj.released_by == []
    assert percpu_ref_read(obj.refcnt) == 0


def test_gets_and_puts_on_different_cpus_touch_only_their_counters(bare: Kernel) -> None:
    obj = _new(bare)
    bare.call(lambda k: percpu_ref_get(k, obj.refcnt), cpu=0)
    bare.call(lambda k: percpu_ref_put(k, obj.refcnt), cpu=1)
    assert obj.refcnt.percpu is not None
    assert obj.refcnt.percpu.counters == [1, -1]
    assert obj.refcnt.count == PERCPU_COUNT_BIAS + 1


def test_kill_releases_only_after_grace_period_and_last_put(bare: Kernel) -> None:
    obj = _new(bare)
    bare.call(lambda k: percpu_ref_get(k, obj.refcnt), cpu=1)  # a second holder
    bare.call(lambda k: percpu_ref_kill(k, obj.refcnt))
    assert percpu_ref_mode(obj.refcnt) == "dead"
    gp_before = bare.rcu.nr_gps
    bare.settle()
    assert bare.rcu.nr_gps > gp_before
    assert obj.released_by == []  # the holder's reference keeps it alive
    assert obj.refcnt.count == 1
    assert obj.refcnt.percpu is None  # 5.3 frees the counters at confirmation
    bare.call(lambda k: percpu_ref_put(k, obj.refcnt), name="last_put")
    assert obj.released_by == [("last_put", "process")]


def test_kill_without_other_holders_releases_in_rcu_callback_context(bare: Kernel) -> None:
    obj = _new(bare)
    bare.call(lambda k: percpu_ref_kill(k, obj.refcnt))
    assert obj.released_by == []
    bare.settle()
    assert len(obj.released_by) == 1
    name, context = obj.released_by[0]
    assert name.startswith("rcuc/")
    assert context == "softirq"


def test_confirm_runs_after_grace_period(bare: Kernel) -> None:
    obj = _new(bare)
    confirmed: list[int] = []

    def confirm(k: Kernel, ref: PercpuRef) -> None:
        confirmed.append(k.rcu.gp_seq)

    seq0 = bare.rcu.gp_seq
    bare.call(lambda k: percpu_ref_kill_and_confirm(k, obj.refcnt, confirm))
    assert confirmed == []
    bare.settle()
    assert len(confirmed) == 1 and confirmed[0] >= seq0 + 2


def test_tryget_succeeds_on_killed_nonzero_ref_but_tryget_live_fails(bare: Kernel) -> None:
    obj = _new(bare)
    bare.call(lambda k: percpu_ref_get(k, obj.refcnt))
    bare.call(lambda k: percpu_ref_kill(k, obj.refcnt))
    assert bare.call(lambda k: percpu_ref_is_dying(k, obj.refcnt))
    assert bare.call(lambda k: percpu_ref_tryget(k, obj.refcnt)) is True
    assert bare.call(lambda k: percpu_ref_tryget_live(k, obj.refcnt)) is False
    bare.settle()
    assert bare.call(lambda k: percpu_ref_tryget(k, obj.refcnt)) is True
    assert bare.call(lambda k: percpu_ref_tryget_live(k, obj.refcnt)) is False


def test_tryget_fails_once_released(bare: Kernel) -> None:
    obj = _new(bare)
    bare.call(lambda k: percpu_ref_kill(k, obj.refcnt))
    bare.settle()
    assert obj.released_by
    assert bare.call(lambda k: percpu_ref_tryget(k, obj.refcnt)) is False
    assert bare.call(lambda k: percpu_ref_is_zero(k, obj.refcnt)) is True


def test_put_below_zero_in_atomic_mode_is_underflow(bare: Kernel) -> None:
    obj = _new(bare)
    bare.call(lambda k: percpu_ref_get(k, obj.refcnt))
    bare.call(lambda k: percpu_ref_kill(k, obj.refcnt))
    bare.settle()
    bare.call(lambda k: percpu_ref_put(k, obj.refcnt))  # count 0: released
    with pytest.raises(KernelViolation) as ei:
        bare.call(lambda k: percpu_ref_put(k, obj.refcnt))
    assert ei.value.violation.kind is ViolationKind.REFCOUNT_UNDERFLOW


def test_excess_percpu_puts_warn_when_switching_to_atomic(bare: Kernel) -> None:
    obj = _new(bare)
    bare.call(lambda k: percpu_ref_put(k, obj.refcnt))
    bare.call(lambda k: percpu_ref_put(k, obj.refcnt))  # one more than was ever taken
    bare.call(lambda k: percpu_ref_kill(k, obj.refcnt))
    with pytest.raises(KernelViolation) as ei:
        bare.settle()
    v = ei.value.violation
    assert v.kind is ViolationKind.REFCOUNT_UNDERFLOW
    assert "after switching to atomic" in v.message


def test_get_on_released_ref_is_get_from_zero(bare: Kernel) -> None:
    obj = _new(bare)
    bare.call(lambda k: percpu_ref_kill(k, obj.refcnt))
    bare.settle()
    with pytest.raises(KernelViolation) as ei:
        bare.call(lambda k: percpu_ref_get(k, obj.refcnt))
    assert ei.value.violation.kind is ViolationKind.REFCOUNT_GET_FROM_ZERO


def test_killing_twice_is_reported(bare: Kernel) -> None:
    obj = _new(bare)
    bare.call(lambda k: percpu_ref_get(k, obj.refcnt))
    bare.call(lambda k: percpu_ref_kill(k, obj.refcnt))
    with pytest.raises(KernelViolation) as ei:
        bare.call(lambda k: percpu_ref_kill(k, obj.refcnt))
    assert ei.value.violation.kind is ViolationKind.PERCPU_REF_MISUSE
    assert "more than once" in ei.value.violation.message


def test_get_after_failed_init_uses_null_percpu_pointer(bare: Kernel) -> None:
    bare.faults.add("percpu", site="body")

    def body(k: Kernel) -> tuple[RefObj, int]:
        obj = kmalloc(k, RefObj, zero=True)
        assert obj is not None
        return obj, percpu_ref_init(k, obj.refcnt, _release)

    obj, ret = bare.call(body)
    assert ret == -12  # -ENOMEM
    with pytest.raises(KernelViolation) as ei:
        bare.call(lambda k: percpu_ref_get(k, obj.refcnt))
    assert ei.value.violation.kind is ViolationKind.PERCPU_REF_MISUSE
    assert "NULL per-cpu" in ei.value.violation.message
