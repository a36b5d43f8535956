"""The simulated heap: allocation, KASAN shadow state, failslab and a kmemleak-style scan.

``kmalloc``/``kzalloc``/``kfree``/``kfree_rcu`` model mm/slab_common.c's entry points for
model objects; ``alloc_percpu``/``free_percpu`` model mm/percpu.c.  An object keeps existing as
a Python object after kfree so that a later access is caught as a use-after-free naming the
object, field, task and step, and the task and place that freed it.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from memcgsim.kernel.kernel import capture_frames, format_frames
from memcgsim.kernel.objects import UNINIT, KObject, KState
from memcgsim.kernel.task import AccessKind
from memcgsim.kernel.violations import ViolationKind

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel

__all__ = [
    "GFP_ATOMIC",
    "GFP_KERNEL",
    "GFP_KERNEL_ACCOUNT",
    "Gfp",
    "Heap",
    "PercpuArea",
    "alloc_percpu",
    "alloc_percpu_struct",
    "free_percpu",
    "kfree",
    "kfree_rcu",
    "kmalloc",
    "kzalloc",
]

ObjT = TypeVar("ObjT", bound=KObject)


#: enum members as module constants (AccessKind.X is a slow metaclass lookup)
_WRITE = AccessKind.WRITE
_ALIVE = KState.ALIVE
_FREED = KState.FREED


class Gfp:
    """The gfp_t bits the model distinguishes (include/linux/gfp.h), as plain ints."""

    NONE = 0
    DIRECT_RECLAIM = 1
    KSWAPD_RECLAIM = 2
    IO = 4
    FS = 8
    HIGH = 16
    ACCOUNT = 32
    NOFAIL = 64
    ZERO = 128


GFP_KERNEL = Gfp.DIRECT_RECLAIM | Gfp.KSWAPD_RECLAIM | Gfp.IO | Gfp.FS
GFP_ATOMIC = Gfp.HIGH | Gfp.KSWAPD_RECLAIM
GFP_KERNEL_ACCOUNT = GFP_KERNEL | Gfp.ACCOUNT


class AccountingHooks(Protocol):
    """What mm/memcontrol provides for __GFP_ACCOUNT allocations (slab_pre/post_alloc_hook)."""

    def charge(self, k: Kernel, obj: KObject, nr_bytes: int, gfp: int) -> bool: ...

    def uncharge(self, k: Kernel, obj: KObject) -> None: ...


class PercpuArea(KObject):
    """A per-cpu allocation (``alloc_percpu()``): one counter per possible CPU."""

    ktype = "percpu"

    def __init__(self, nr_cpus: int, what: str) -> None:
        super().__init__()
        self.counters = [0] * nr_cpus
        self.what = what

    def _klabel(self) -> str:
        return self.what


class Heap:
    """Allocation registry: object ids, live set, shadow states, leak scan."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self._next_oid = 1
        #: live allocations by object id (dicts keep allocation order: deterministic scans)
        self.live: dict[int, KObject] = {}
        self.statics: list[KObject] = []
        #: objects the user (or a workload) holds, for the leak scan
        self.roots: dict[int, KObject] = {}
        self.nr_allocs = 0
        self.nr_frees = 0
        self.account: AccountingHooks | None = None
        #: more roots for the leak scan, computed when it runs (owners slab objects reference)
        self.root_providers: list[Callable[[], Iterable[Any]]] = []

    def adopt(self, obj: ObjT, site: str, *, static: bool = False) -> ObjT:
        """Give ``obj`` an id and register it as live (or as static storage)."""
        obj._koid = self._next_oid
        self._next_oid += 1
        obj._ksite = site
        obj._kstate = _ALIVE
        if static:
            obj._kstatic = True
            self.statics.append(obj)
        else:
            self.live[obj._koid] = obj
            self.nr_allocs += 1
        return obj

    def poison_uninit(self, obj: KObject) -> None:
        """Give every declared kernel field of a kmalloc()ed object an uninitialised value."""
        for name in getattr(obj, "kfields", ()):
            cur = getattr(obj, name, None)
            if isinstance(cur, KObject) and cur._kowner is obj:
                self.poison_uninit(cur)
            else:
                setattr(obj, name, UNINIT)

    def release(self, obj: KObject) -> None:
        """Mark ``obj`` freed (after the caller's checks)."""
        obj._kstate = _FREED
        self.live.pop(obj._koid, None)
        self.roots.pop(obj._koid, None)
        self.nr_frees += 1

    # ------------------------------------------------------------------ kmemleak
    def unreachable(self, extra_roots: Iterable[Any] = ()) -> list[KObject]:
        """Live allocations no root reaches (kmemleak's scan, over Python references).

        Roots are static objects, user-held objects, every task's css_set, pending RCU
        callbacks and work items, and ``extra_roots``.
        """
        k = self.k
        seen: set[int] = set()
        todo: deque[Any] = deque()
        todo.extend(self.statics)
        todo.extend(self.roots.values())
        todo.extend(extra_roots)
        for provider in self.root_providers:
            todo.extend(provider())
        for t in k.tasks:
            if not t.exited:
                todo.append(t.cgroups)
        todo.extend(k.rcu.pending_objects())
        todo.extend(k.wq.pending_objects())
        while todo:
            x = todo.popleft()
            if isinstance(x, KObject):
                if id(x) in seen:
                    continue
                seen.add(id(x))
                todo.extend(_refs(x))
                if x._kowner is not x:
                    todo.append(x._kowner)
            elif isinstance(x, list | tuple | set | frozenset | deque):
                todo.extend(x)
            elif isinstance(x, dict):
                todo.extend(x.values())
        return [o for o in self.live.values() if id(o) not in seen]

    def check_leaks(self, extra_roots: Iterable[Any] = ()) -> list[KObject]:
        """Report each unreachable live allocation as a leak; return them."""
        leaked = self.unreachable(extra_roots)
        if leaked:
            names = ", ".join(o.kname() + (f" from {o._ksite}" if o._ksite else "") for o in leaked[:10])
            more = f" and {len(leaked) - 10} more" if len(leaked) > 10 else ""
            self.k.report(ViolationKind.LEAK, f"unreferenced objects: {names}{more}")
        return leaked


def _refs(obj: KObject) -> Iterable[Any]:
    d = getattr(obj, "__dict__", None)
    if d is None:
        return ()
    return [v for name, v in d.items() if not name.startswith("_k") and _maybe_ref(v)]


def _maybe_ref(v: Any) -> bool:
    return isinstance(v, KObject | list | tuple | dict | set | frozenset | deque)


_COMPREHENSIONS = ("<listcomp>", "<genexpr>", "<dictcomp>", "<setcomp>")


def _caller_site(depth: int = 2) -> str:
    """The allocating function's name (comprehension frames belong to their function)."""
    f = sys._getframe(depth)
    while f.f_code.co_name in _COMPREHENSIONS and f.f_back is not None:
        f = f.f_back
    return f.f_code.co_name


def kmalloc(k: Kernel, cls: type[ObjT], *args: Any, gfp: int = GFP_KERNEL, site: str | None = None,
            zero: bool = False, **kwargs: Any) -> ObjT | None:
    """kmalloc(sizeof(*obj), gfp): a new ``cls`` instance, or None when the allocation fails.

    Fails when failslab says so for this call site (the caller's function name); with
    __GFP_ACCOUNT it is charged to the current task's memcg, and fails if that charge does.
    Without __GFP_ZERO (kzalloc) the object's kernel fields read as uninitialised.
    """
    site = site or _caller_site()
    if gfp & Gfp.DIRECT_RECLAIM and not k.can_sleep():
        k.might_sleep(f"kmalloc({cls.ktype}, GFP_KERNEL) in {site}")
    if not gfp & Gfp.NOFAIL and k.faults.should_fail("slab", site, cls.ktype):
        k.trace("failslab", site, cls.ktype)
        return None
    obj = cls(*args, **kwargs)
    k.heap.adopt(obj, site)
    if not (zero or gfp & Gfp.ZERO):
        k.heap.poison_uninit(obj)
    if gfp & Gfp.ACCOUNT and k.heap.account is not None and not k.heap.account.charge(
        k, obj, obj.alloc_size(), gfp
    ):
        k.heap.release(obj)
        return None
    return obj


def kzalloc(k: Kernel, cls: type[ObjT], *args: Any, gfp: int = GFP_KERNEL, site: str | None = None,
            **kwargs: Any) -> ObjT | None:
    """kzalloc(): kmalloc() with every field zeroed (initialised by the constructor)."""
    return kmalloc(k, cls, *args, gfp=gfp, site=site or _caller_site(), zero=True, **kwargs)


def kfree(k: Kernel, obj: KObject | None) -> None:
    """kfree(obj): KASAN reports a double free or a free of something never allocated."""
    if obj is None:
        return
    k.point(obj._kowner, "<slab>", _WRITE)
    if obj._kstate is _FREED:
        k.report(ViolationKind.DOUBLE_FREE,
                 f"double-free of {obj.kname()} (first freed by {getattr(obj, '_kfreed_by', '?')})",
                 obj=obj)
        return
    if obj._kowner is not obj or obj._koid not in k.heap.live:
        k.report(ViolationKind.INVALID_FREE, f"invalid-free of {obj.kname()}", obj=obj)
        return
    if getattr(obj, "_kaccounted", False) and k.heap.account is not None:
        k.heap.account.uncharge(k, obj)
    obj._kfreed_by = _FreedBy(k)  # type: ignore[attr-defined]
    k.heap.release(obj)


class _FreedBy:
    """Which task freed an object, where and when; formatted only if a report names it."""

    __slots__ = ("frames", "step", "task")

    def __init__(self, k: Kernel) -> None:
        t = k.current
        self.task = t.name if t else "-"
        # 1: this __init__, 2: kfree, 3: kfree's caller (as k.location(2) from kfree)
        self.frames = capture_frames(3)
        self.step = k.steps

    def __str__(self) -> str:
        return f"{self.task} at {format_frames(self.frames)} step {self.step}"


def kfree_rcu(k: Kernel, obj: KObject, head_field: str = "rcu") -> None:
    """kfree_rcu(obj, head_field): free ``obj`` after a grace period, via its rcu_head."""
    from memcgsim.kernel.rcu import call_rcu

    head = getattr(obj, head_field)
    obj._krcu_pending = True

    def _kfree_rcu_cb(k: Kernel, _head: Any) -> None:
        obj._krcu_pending = False
        kfree(k, obj)

    call_rcu(k, head, _kfree_rcu_cb)


def alloc_percpu(k: Kernel, what: str, *, site: str | None = None,
                 gfp: int = GFP_KERNEL) -> PercpuArea | None:
    """alloc_percpu_gfp(unsigned long, gfp): a counter per CPU, or None on failure."""
    site = site or _caller_site()
    if gfp & Gfp.DIRECT_RECLAIM and not k.can_sleep():
        k.might_sleep(f"alloc_percpu in {site}")
    if k.faults.should_fail("percpu", site, what):
        k.trace("fail_percpu", site, what)
        return None
    area = PercpuArea(k.nr_cpus, what)
    return k.heap.adopt(area, site)


def alloc_percpu_struct(k: Kernel, cls: type[ObjT], *args: Any, site: str | None = None,
                        gfp: int = GFP_KERNEL) -> ObjT | None:
    """alloc_percpu(struct ...): a per-cpu structure (fault kind ``"percpu"``), or None."""
    site = site or _caller_site()
    if gfp & Gfp.DIRECT_RECLAIM and not k.can_sleep():
        k.might_sleep(f"alloc_percpu in {site}")
    if k.faults.should_fail("percpu", site, cls.ktype):
        k.trace("fail_percpu", site, cls.ktype)
        return None
    return k.heap.adopt(cls(*args), site)


def free_percpu(k: Kernel, area: PercpuArea | None) -> None:
    """free_percpu(): a no-op on NULL, a KASAN report on a double free."""
    kfree(k, area)
