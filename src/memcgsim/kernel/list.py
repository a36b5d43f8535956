"""Doubly linked lists with CONFIG_DEBUG_LIST checks (include/linux/list.h, lib/list_debug.c).

A ``list_head`` is embedded in the object that is on the list; ``container_of`` is the list
head's owner.  Every pointer read or write is an access of the object containing that
list_head, so racing list operations interleave at the granularity the C code has.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from memcgsim.kernel.objects import LIST_POISON1, LIST_POISON2, KObject, KState
from memcgsim.kernel.violations import ViolationKind

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel

__all__ = [
    "INIT_LIST_HEAD",
    "ListHead",
    "list_add",
    "list_add_tail",
    "list_add_tail_rcu",
    "list_count",
    "list_del",
    "list_del_init",
    "list_del_rcu",
    "list_empty",
    "list_entries",
    "list_for_each_entry",
    "list_for_each_entry_rcu",
    "list_splice",
    "list_splice_init",
]


class ListHead(KObject):
    """struct list_head embedded in ``owner`` at member ``path`` (or a standalone head)."""

    ktype = "struct list_head"
    kfields = ("next", "prev")

    def __init__(self, owner: KObject | None = None, path: str = "list") -> None:
        super().__init__()
        if owner is not None:
            self.embed(owner, path)
        self.next: Any = self
        self.prev: Any = self

    @property
    def container(self) -> KObject:
        """container_of(): the object this list_head is embedded in."""
        return self._kowner


def _corrupt(k: Kernel, msg: str, obj: KObject) -> None:
    k.report(ViolationKind.LIST_CORRUPTION, msg, obj=obj)


def INIT_LIST_HEAD(k: Kernel, head: ListHead) -> None:
    """INIT_LIST_HEAD(): an empty list points at itself."""
    k.store(head, "next", head)
    k.store(head, "prev", head)


def _list_add_valid(k: Kernel, new: ListHead, prev: ListHead, nxt: ListHead) -> bool:
    """__list_add_valid() (CONFIG_DEBUG_LIST)."""
    if not k.config.debug_list:
        return True
    n_prev = k.load(nxt, "prev")
    if n_prev is not prev:
        _corrupt(k, f"list_add corruption. next->prev should be prev ({prev.kname()}), "
                    f"but was {_name(n_prev)}. (next={nxt.kname()})", nxt)
        return False
    p_next = k.load(prev, "next")
    if p_next is not nxt:
        _corrupt(k, f"list_add corruption. prev->next should be next ({nxt.kname()}), "
                    f"but was {_name(p_next)}. (prev={prev.kname()})", prev)
        return False
    if new is prev or new is nxt:
        _corrupt(k, f"list_add double add: new={new.kname()}, prev={prev.kname()}, "
                    f"next={nxt.kname()}", new)
        return False
    return True


def _name(x: Any) -> str:
    return x.kname() if isinstance(x, KObject) else repr(x)


def __list_add(k: Kernel, new: ListHead, prev: ListHead, nxt: ListHead) -> None:
    if not _list_add_valid(k, new, prev, nxt):
        return
    k.store(nxt, "prev", new)
    k.store(new, "next", nxt)
    k.store(new, "prev", prev)
    k.store(prev, "next", new)


def list_add(k: Kernel, new: ListHead, head: ListHead) -> None:
    """list_add(new, head): insert after ``head`` (stack order)."""
    __list_add(k, new, head, k.load(head, "next"))


def list_add_tail(k: Kernel, new: ListHead, head: ListHead) -> None:
    """list_add_tail(new, head): insert before ``head`` (queue order)."""
    __list_add(k, new, k.load(head, "prev"), head)


# The RCU variants publish with rcu_assign_pointer(); the model's stores are already ordered.
list_add_tail_rcu = list_add_tail


def _list_del_entry_valid(k: Kernel, entry: ListHead) -> tuple[Any, Any] | None:
    """__list_del_entry_valid() (CONFIG_DEBUG_LIST): returns (prev, next) when sound."""
    nxt = k.load(entry, "next")
    prev = k.load(entry, "prev")
    if not k.config.debug_list:
        return prev, nxt
    if nxt is LIST_POISON1:
        _corrupt(k, f"list_del corruption, {entry.kname()}->next is LIST_POISON1", entry)
        return None
    if prev is LIST_POISON2:
        _corrupt(k, f"list_del corruption, {entry.kname()}->prev is LIST_POISON2", entry)
        return None
    if not isinstance(nxt, ListHead) or not isinstance(prev, ListHead):
        _corrupt(k, f"list_del corruption, {entry.kname()} holds garbage "
                    f"(next={_name(nxt)}, prev={_name(prev)})", entry)
        return None
    if k.load(prev, "next") is not entry:
        _corrupt(k, f"list_del corruption. prev->next should be {entry.kname()}, "
                    f"but was {_name(prev.next)}", entry)
        return None
    if k.load(nxt, "prev") is not entry:
        _corrupt(k, f"list_del corruption. next->prev should be {entry.kname()}, "
                    f"but was {_name(nxt.prev)}", entry)
        return None
    return prev, nxt


def __list_del_entry(k: Kernel, entry: ListHead) -> bool:
    pn = _list_del_entry_valid(k, entry)
    if pn is None:
        return False
    prev, nxt = pn
    k.store(nxt, "prev", prev)
    k.store(prev, "next", nxt)
    return True


def list_del(k: Kernel, entry: ListHead) -> None:
    """list_del(): unlink and poison the entry's pointers."""
    if __list_del_entry(k, entry):
        k.store(entry, "next", LIST_POISON1)
        k.store(entry, "prev", LIST_POISON2)


def list_del_init(k: Kernel, entry: ListHead) -> None:
    """list_del_init(): unlink and leave the entry as an empty list."""
    if __list_del_entry(k, entry):
        INIT_LIST_HEAD(k, entry)


def list_del_rcu(k: Kernel, entry: ListHead) -> None:
    """list_del_rcu(): unlink, poisoning only ->prev so concurrent readers can move on."""
    if __list_del_entry(k, entry):
        k.store(entry, "prev", LIST_POISON2)


def list_empty(k: Kernel, head: ListHead) -> bool:
    """list_empty(): READ_ONCE(head->next) == head."""
    return k.load(head, "next") is head


def __list_splice(k: Kernel, lst: ListHead, prev: ListHead, nxt: ListHead) -> None:
    first = k.load(lst, "next")
    last = k.load(lst, "prev")
    k.store(first, "prev", prev)
    k.store(prev, "next", first)
    k.store(last, "next", nxt)
    k.store(nxt, "prev", last)


def list_splice(k: Kernel, lst: ListHead, head: ListHead) -> None:
    """list_splice(list, head): join ``lst``'s entries after ``head``.

    ``lst`` itself is left untouched, still pointing at entries that now belong to ``head``:
    it must be reinitialised before reuse (list_splice_init does that).
    """
    if not list_empty(k, lst):
        __list_splice(k, lst, head, k.load(head, "next"))


def list_splice_init(k: Kernel, lst: ListHead, head: ListHead) -> None:
    """list_splice_init(): list_splice() then INIT_LIST_HEAD(list)."""
    if not list_empty(k, lst):
        __list_splice(k, lst, head, k.load(head, "next"))
        INIT_LIST_HEAD(k, lst)


def list_for_each_entry(k: Kernel, head: ListHead) -> Iterator[Any]:
    """list_for_each_entry(pos, head, member): yields each entry's containing object.

    Following a poisoned or freed pointer is reported (a GPF or a KASAN report in the kernel).
    """
    pos = k.load(head, "next")
    while pos is not head:
        if not isinstance(pos, ListHead) or pos._kowner._kstate is KState.POISON:
            k.report(ViolationKind.BAD_POINTER,
                     f"general protection fault walking {head.kname()}: followed {_name(pos)}",
                     obj=head)
            return
        yield pos._kowner
        pos = k.load(pos, "next")


# Readers under rcu_read_lock() walk the same way; list_del_rcu keeps ->next valid for them.
list_for_each_entry_rcu = list_for_each_entry


def list_entries(head: ListHead) -> list[Any]:
    """The entries on ``head`` without scheduling points (for checkers and reports)."""
    out = []
    pos = head.next
    seen = 0
    while pos is not head and isinstance(pos, ListHead) and seen < 10_000_000:
        out.append(pos._kowner)
        pos = pos.next
        seen += 1
    return out


def list_count(head: ListHead) -> int:
    return len(list_entries(head))
