"""The catalogue of seed mutants: each a small, documented change to one seed operation.

A mutant is a :class:`~memcgsim.designs.memcg_ptr.MemcgPtrDesign` subclass that overrides one
operation (sometimes two, when the bug needs both) with a copy of the seed's function carrying
the change; it is installed on one Kernel at run time (``k.design``), never by editing the
seed's files.  The explorer must find a violation in each; the unmodified seed shows none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memcgsim.cgroup.cgroup import css_get, css_get_many, css_put_many
from memcgsim.designs.memcg_ptr import MemcgPtrDesign
from memcgsim.kernel.heap import kfree
from memcgsim.kernel.list import list_del, list_for_each_entry, list_splice
from memcgsim.kernel.locking import (
    spin_lock_irq,
    spin_lock_irqsave,
    spin_unlock_irq,
    spin_unlock_irqrestore,
)
from memcgsim.kernel.percpu_ref import percpu_ref_exit, percpu_ref_kill
from memcgsim.kernel.rcu import (
    rcu_dereference,
    rcu_read_lock,
    rcu_read_unlock,
    rcu_swap_protected,
)
from memcgsim.mm.memcontrol import (
    MemCgroup,
    MemCgroupPtr,
    mem_cgroup_ptr_get,
    mem_cgroup_put,
    parent_mem_cgroup,
)

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.percpu_ref import PercpuRef

__all__ = ["MUTANTS", "Mutant"]


class Mutant(MemcgPtrDesign):
    """Base of the catalogue: ``mutant`` is the name ``--mutant`` selects."""

    mutant = ""
    #: one line: what changed, and why it breaks
    change = ""


def _mutant_reparent(k: Kernel, memcg: MemCgroup, parent: MemCgroup, *,
                     css_get_memcg: bool = True, kill_first: bool = False,
                     lock: bool = True) -> None:
    """memcg_reparent_kmem_memcg_ptr() with the switches the reparenting mutants flip."""
    g = k.cgroup
    nr_reparented = 0
    if kill_first:
        memcg_ptr = rcu_dereference_protected_ptr(k, memcg)
        percpu_ref_kill(k, memcg_ptr.refcnt)
        rcu_swap_protected(k, memcg, "kmem_memcg_ptr", None, True)
    else:
        memcg_ptr = rcu_swap_protected(k, memcg, "kmem_memcg_ptr", None, True)
        assert memcg_ptr is not None
        percpu_ref_kill(k, memcg_ptr.refcnt)
    if css_get_memcg:
        css_get(k, memcg)
    if lock:
        spin_lock_irq(k, g.css_set_lock)
    for ptr in list_for_each_entry(k, memcg.kmem_memcg_ptr_list):
        k.xchg(ptr, "memcg", parent)
        nr_reparented += 1
    if nr_reparented:
        list_splice(k, memcg.kmem_memcg_ptr_list, parent.kmem_memcg_ptr_list)
    if lock:
        spin_unlock_irq(k, g.css_set_lock)
    k.memcg.reparent_log.append(nr_reparented)
    if nr_reparented:
        css_get_many(k, parent, nr_reparented)
        css_put_many(k, memcg, nr_reparented)


def rcu_dereference_protected_ptr(k: Kernel, memcg: MemCgroup) -> MemCgroupPtr:
    """rcu_dereference_protected(memcg->kmem_memcg_ptr, true)."""
    ptr = k.load(memcg, "kmem_memcg_ptr")
    assert isinstance(ptr, MemCgroupPtr)
    return ptr


class NoCssGetInReparent(Mutant):
    """memcg_reparent_kmem_memcg_ptr() without ``css_get(&memcg->css)``: the memcg's own ptr
    never takes the reference it then moves to the parent, so the memcg loses one."""

    mutant = "no-css-get-in-reparent"
    change = "reparent drops css_get(&memcg->css) before the xchg loop"

    def memcg_reparent_kmem_memcg_ptr(self, k: Kernel, memcg: MemCgroup,
                                      parent: MemCgroup) -> None:
        _mutant_reparent(k, memcg, parent, css_get_memcg=False)


class XchgLoopWithoutLock(Mutant):
    """The xchg loop and list_splice of memcg_reparent_kmem_memcg_ptr() run without
    css_set_lock, racing with memcg_ptr_release()'s list_del."""

    mutant = "xchg-loop-without-lock"
    change = "reparent walks, xchg()s and splices the ptr list without css_set_lock"

    def memcg_reparent_kmem_memcg_ptr(self, k: Kernel, memcg: MemCgroup,
                                      parent: MemCgroup) -> None:
        _mutant_reparent(k, memcg, parent, lock=False)


def _mutant_release(k: Kernel, ref: PercpuRef, *, lock: bool = True, put_first: bool = False,
                    rcu_free: bool = True) -> None:
    """memcg_ptr_release() with the switches the release mutants flip."""
    from memcgsim.kernel.heap import kfree_rcu

    ptr = ref._kowner
    assert isinstance(ptr, MemCgroupPtr)
    g = k.cgroup
    if put_first:
        mem_cgroup_put(k, k.load(ptr, "memcg"))
    if lock:
        flags = spin_lock_irqsave(k, g.css_set_lock)
    list_del(k, ptr.list)
    if lock:
        spin_unlock_irqrestore(k, g.css_set_lock, flags)
    if not put_first:
        mem_cgroup_put(k, k.load(ptr, "memcg"))
    percpu_ref_exit(k, ref)
    if rcu_free:
        kfree_rcu(k, ptr, "rcu")
    else:
        kfree(k, ptr)


class KfreeNotKfreeRcu(Mutant):
    """memcg_ptr_release() frees the ptr with kfree() instead of kfree_rcu(): an RCU reader
    that loaded the ptr (memcg->kmem_memcg_ptr, an object's ownership entry) may still use it."""

    mutant = "kfree-not-kfree-rcu"
    change = "release frees the ptr at once (kfree) instead of after a grace period"

    def memcg_ptr_release(self, k: Kernel, ref: PercpuRef) -> None:
        _mutant_release(k, ref, rcu_free=False)


class ListDelOutsideLock(Mutant):
    """memcg_ptr_release() unlinks the ptr without css_set_lock, racing with the
    reparenting's walk and splice of the same list."""

    mutant = "list-del-outside-lock"
    change = "release does list_del(&ptr->list) without css_set_lock"

    def memcg_ptr_release(self, k: Kernel, ref: PercpuRef) -> None:
        _mutant_release(k, ref, lock=False)


class PutMemcgBeforeListDel(Mutant):
    """memcg_ptr_release() reads ptr->memcg and puts it *before* unlinking under
    css_set_lock: a reparenting in between still finds the ptr on the list and moves its
    reference to the parent, so the old memcg is put twice and the parent never."""

    mutant = "put-memcg-before-list-del"
    change = "release puts ptr->memcg before the list_del under css_set_lock"

    def memcg_ptr_release(self, k: Kernel, ref: PercpuRef) -> None:
        _mutant_release(k, ref, put_first=True)


class GetNotTryget(Mutant):
    """mem_cgroup_get_kmem_ptr() takes ``mem_cgroup_ptr_get()`` (no zero check) instead of
    tryget, *and* memcg_reparent_kmem_memcg_ptr() kills the ptr before unpublishing it: a
    reader that finds the still-published ptr after the kill's grace period began may raise
    a count that already reached zero (each change alone is harmless)."""

    mutant = "get-not-tryget"
    change = "get_kmem_ptr uses percpu_ref_get, and reparent kills before rcu_swap_protected"

    def mem_cgroup_get_kmem_ptr(self, k: Kernel, memcg: MemCgroup) -> MemCgroupPtr | None:
        ptr: MemCgroupPtr | None = None
        m: MemCgroup | None = memcg
        rcu_read_lock(k)
        while m is not None:
            ptr = rcu_dereference(k, m, "kmem_memcg_ptr")
            if ptr is not None:
                mem_cgroup_ptr_get(k, ptr)
                break
            m = parent_mem_cgroup(m)
        rcu_read_unlock(k)
        return ptr

    def memcg_reparent_kmem_memcg_ptr(self, k: Kernel, memcg: MemCgroup,
                                      parent: MemCgroup) -> None:
        _mutant_reparent(k, memcg, parent, kill_first=True)


class CssGetNotTryget(Mutant):
    """get_mem_cgroup_from_ptr() takes ``css_get()`` on ``ptr->memcg`` instead of looping
    on css_tryget(): a plain get can raise a dying memcg's count from zero (the bug that
    eefbfa7fd678 fixed for obj_cgroup in 5.10)."""

    mutant = "css-get-not-tryget"
    change = "taking the memcg from a ptr uses css_get instead of the css_tryget loop"

    def get_mem_cgroup_from_ptr(self, k: Kernel, ptr: MemCgroupPtr) -> MemCgroup:
        rcu_read_lock(k)
        memcg = k.load(ptr, "memcg")
        css_get(k, memcg)
        rcu_read_unlock(k)
        assert isinstance(memcg, MemCgroup)
        return memcg


#: name -> mutant class, in the catalogue's order
MUTANTS: dict[str, type[Mutant]] = {
    cls.mutant: cls
    for cls in (NoCssGetInReparent, KfreeNotKfreeRcu, GetNotTryget, CssGetNotTryget,
                XchgLoopWithoutLock, ListDelOutsideLock, PutMemcgBeforeListDel)
}
