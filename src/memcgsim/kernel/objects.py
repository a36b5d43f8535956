"""Model objects and their KASAN-like shadow state.

Every piece of shared kernel state is an attribute of a :class:`KObject`.  A top-level object
is one heap allocation (``kmalloc``); an *embedded* object (a ``struct percpu_ref`` inside a
``struct mem_cgroup_ptr``, a ``list_head`` inside a css) shares the shadow state of the
allocation that contains it, exactly as C structs embed each other.  Accesses go through
:meth:`Kernel.load` / :meth:`Kernel.store` and friends, which check the containing
allocation's state first: that is where use-after-free is caught.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

__all__ = [
    "LIST_POISON1",
    "LIST_POISON2",
    "RCU_HEAD_CLOBBER",
    "UNINIT",
    "KObject",
    "KState",
    "LazyMember",
    "Poison",
]


class KState(enum.IntEnum):
    """Shadow state of an allocation (cf. KASAN's shadow bytes)."""

    ALIVE = 0
    FREED = 1
    #: Not an allocation at all: a poison value or a garbage pointer being dereferenced.
    POISON = 2


#: (an enum member read through its class is a slow metaclass lookup)
_ALIVE = KState.ALIVE


class KObject:
    """Base class of every model object that lives in simulated kernel memory.

    Attributes starting with ``_k`` are the model's bookkeeping, never kernel state.
    """

    #: The kernel type this class models, for reports (``"struct mem_cgroup_ptr"``).
    ktype: ClassVar[str] = "object"
    #: ``sizeof()`` of the kernel type in bytes, for accounting; 0 when irrelevant.
    ksize: ClassVar[int] = 0

    # Defaults on the class: a world is built per explored schedule, out of dozens of
    # (mostly embedded) objects, and only the allocation's own state is ever read.
    _kstate: KState = KState.ALIVE
    _koid: int = -1
    _kowner: KObject
    _kpath: str = ""
    _ksite: str = ""
    _krcu_pending: bool = False
    #: static storage (the root cgroup, global locks): never freed
    _kstatic: bool = False

    def __init__(self) -> None:
        # Until the heap adopts it, an object is its own allocation with no id.
        self._kstate = _ALIVE
        self._kowner = self

    def embed(self, owner: KObject, path: str) -> None:
        """Make this object part of ``owner``'s allocation, at member ``path``."""
        self._kowner = owner
        self._kpath = path + "."

    @property
    def kowner(self) -> KObject:
        """The allocation containing this object (itself, if top-level)."""
        return self._kowner

    def kname(self) -> str:
        """A stable human name: ``mem_cgroup_ptr#12`` or ``mem_cgroup#3.refcnt``."""
        owner = self._kowner
        base = owner._kdescr()
        if owner is self:
            return base
        return base + "." + self._kpath[:-1]

    def _kdescr(self) -> str:
        short = self.ktype.removeprefix("struct ")
        label = self._klabel()
        oid = f"#{self._koid}" if self._koid >= 0 else ""
        return f"{short}{oid}" + (f"({label})" if label else "")

    def _klabel(self) -> str:
        """A short identifying label (a cgroup's path, say); empty by default."""
        return ""

    def alloc_size(self) -> int:
        """Bytes this allocation occupies (``ksize()``), for accounting."""
        return self.ksize

    def __repr__(self) -> str:
        return f"<{self.kname()}>"


M = TypeVar("M")


class LazyMember(Generic[M]):
    """An embedded member made on first access, ``factory(obj)``: the explorer builds a world
    per schedule, and most of a css's members (work items, child lists) are never touched by
    the racing code.  Once made it is a plain attribute of ``obj`` (a non-data descriptor);
    assigning the attribute first works as for any attribute."""

    __slots__ = ("factory", "name")

    def __init__(self, factory: Callable[[Any], M]) -> None:
        self.factory = factory
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> M:
        if obj is None:
            return self  # type: ignore[return-value]
        value = self.factory(obj)
        setattr(obj, self.name, value)
        return value


class Poison(KObject):
    """A poison pointer value (LIST_POISON1, a clobbered rcu_head); dereferencing it faults."""

    ktype = "poison"

    def __init__(self, name: str, value: int) -> None:
        super().__init__()
        self._kstate = KState.POISON
        self.name = name
        self.value = value

    def _kdescr(self) -> str:
        return f"{self.name}({self.value:#x})"

    def __getattr__(self, item: str) -> Any:
        # Reached only by model code that bypassed Kernel.load; keep it loud.
        raise AttributeError(f"dereferencing poison pointer {self.name}.{item}")


#: include/linux/poison.h: list_del() leaves these in the removed entry.
LIST_POISON1 = Poison("LIST_POISON1", 0xDEAD000000000100)
LIST_POISON2 = Poison("LIST_POISON2", 0xDEAD000000000122)
#: What a list_head reads as once call_rcu() has reused its storage (a union with rcu_head).
RCU_HEAD_CLOBBER = Poison("rcu_head.func", 0xFFFFFFFF81000000)


class _Uninit:
    """The value of a kmalloc()ed field before anything is written to it."""

    _instance: ClassVar[_Uninit | None] = None

    def __new__(cls) -> _Uninit:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNINIT"

    def __bool__(self) -> bool:
        raise TypeError("uninitialised kernel memory used in a condition")


UNINIT: Any = _Uninit()
