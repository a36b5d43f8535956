"""Hierarchical page counters (mm/page_counter.c).

A charge is added to the counter and every ancestor; ``try_charge`` fails at the first level
whose ``max`` it would exceed (bumping that level's ``failcnt``) and rolls back the levels
below.  An uncharge that takes a counter below zero WARNs and clamps to zero, as the kernel does.
Model simplification: no min/low protection propagation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memcgsim.kernel.errno import EBUSY, EINVAL
from memcgsim.kernel.objects import KObject
from memcgsim.kernel.violations import ViolationKind
from memcgsim.lib.cmdline import memparse

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel

__all__ = [
    "PAGE_COUNTER_MAX",
    "PageCounter",
    "page_counter_cancel",
    "page_counter_charge",
    "page_counter_init",
    "page_counter_memparse",
    "page_counter_read",
    "page_counter_set_low",
    "page_counter_set_max",
    "page_counter_set_min",
    "page_counter_try_charge",
    "page_counter_uncharge",
]

#: LONG_MAX / PAGE_SIZE on 64-bit
PAGE_COUNTER_MAX = ((1 << 63) - 1) // 4096


class PageCounter(KObject):
    """struct page_counter, embedded in a memcg (``memory``, ``swap``, ``kmem``...)."""

    ktype = "struct page_counter"

    def __init__(self, owner: KObject | None = None, path: str = "memory") -> None:
        super().__init__()
        if owner is not None:
            self.embed(owner, path)
        #: atomic_long_t usage, in pages
        self.usage = 0
        self.max = PAGE_COUNTER_MAX
        #: memory.min and memory.low (protection; stored, see page_counter_set_min)
        self.min = 0
        self.low = 0
        self.watermark = 0
        self.failcnt = 0
        self.parent: PageCounter | None = None


def page_counter_init(counter: PageCounter, parent: PageCounter | None) -> None:
    """page_counter_init()."""
    counter.usage = 0
    counter.max = PAGE_COUNTER_MAX
    counter.parent = parent


def page_counter_read(counter: PageCounter) -> int:
    """page_counter_read(): atomic_long_read(&counter->usage)."""
    return counter.usage


def page_counter_cancel(k: Kernel, counter: PageCounter, nr_pages: int) -> None:
    """page_counter_cancel(): uncharge one level; underflow WARNs and clamps to zero."""
    _, new = k.rmw(counter, "usage", lambda u: u - nr_pages)
    if new < 0:
        k.report(ViolationKind.ACCOUNTING,
                 f"page_counter underflow: {new} nr_pages={nr_pages} in {counter.kname()}",
                 obj=counter, field="usage")
        k.store(counter, "usage", 0)


def page_counter_charge(k: Kernel, counter: PageCounter, nr_pages: int) -> None:
    """page_counter_charge(): charge every level, ignoring limits."""
    c: PageCounter | None = counter
    while c is not None:
        _, new = k.rmw(c, "usage", lambda u: u + nr_pages)
        if new > c.watermark:
            c.watermark = new
        c = c.parent


def page_counter_try_charge(k: Kernel, counter: PageCounter, nr_pages: int
                            ) -> tuple[bool, PageCounter | None]:
    """page_counter_try_charge(): (True, None), or (False, the counter that hit its max)."""
    c: PageCounter | None = counter
    while c is not None:
        # Charge speculatively, then check, so that racing chargers cannot both pass.
        _, new = k.rmw(c, "usage", lambda u: u + nr_pages)
        if new > k.load(c, "max"):
            k.rmw(c, "usage", lambda u: u - nr_pages)
            k.rmw(c, "failcnt", lambda f: f + 1)
            fail = c
            d: PageCounter | None = counter
            while d is not None and d is not fail:
                page_counter_cancel(k, d, nr_pages)
                d = d.parent
            return False, fail
        if new > c.watermark:
            c.watermark = new
        c = c.parent
    return True, None


def page_counter_uncharge(k: Kernel, counter: PageCounter, nr_pages: int) -> None:
    """page_counter_uncharge(): cancel at every level."""
    c: PageCounter | None = counter
    while c is not None:
        page_counter_cancel(k, c, nr_pages)
        c = c.parent


def page_counter_set_max(k: Kernel, counter: PageCounter, nr_pages: int) -> int:
    """page_counter_set_max(): 0, or -EBUSY if usage already exceeds the new limit."""
    if k.load(counter, "usage") > nr_pages:
        return -EBUSY
    k.store(counter, "max", nr_pages)
    return 0


def page_counter_set_min(k: Kernel, counter: PageCounter, nr_pages: int) -> None:
    """page_counter_set_min(): memory.min.

    Model simplification: the kernel propagates protected usage up the tree
    (propagate_protected_usage) for reclaim to honour; the model stores the value only.
    """
    k.store(counter, "min", nr_pages)


def page_counter_set_low(k: Kernel, counter: PageCounter, nr_pages: int) -> None:
    """page_counter_set_low(): memory.low (stored only, as page_counter_set_min)."""
    k.store(counter, "low", nr_pages)


def page_counter_memparse(buf: str, max_str: str, page_size: int = 4096) -> tuple[int, int]:
    """page_counter_memparse(buf, max, &nr_pages): (0, nr_pages) or (-EINVAL, 0).

    ``max_str`` (``"max"``) means PAGE_COUNTER_MAX; otherwise memparse() must consume the whole
    buffer, and the byte count is rounded down to whole pages, capped at PAGE_COUNTER_MAX.
    The caller strips surrounding whitespace first (strstrip()).
    """
    if buf == max_str:
        return 0, PAGE_COUNTER_MAX
    nr_bytes, end = memparse(buf)
    if end != len(buf):
        return -EINVAL, 0
    return 0, min(nr_bytes // page_size, PAGE_COUNTER_MAX)
