"""A scenario's initial state, built once per process and restored in place for each run.

Stateless exploration starts every schedule from the scenario's initial state: a fresh
:class:`~memcgsim.kernel.kernel.Kernel`, the design, ``setup(k)`` and the sequential run that
follows it.  For a scenario whose setup keeps no state outside the kernel and the world it
returns (``Scenario.snapshot``), that state is built once; a :class:`Snapshot` records the
contents of every mutable object reachable from the kernel and the world (each object's
attributes, each list, dict, set and deque, each closure cell), and :meth:`Snapshot.restore`
puts them back after a run.  Objects a run creates are then unreachable from the restored
state, exactly as the previous run's whole world is in a fresh build; the restored objects
keep their identities, their object ids (``_koid``) and their order in every container, so
the run that follows cannot tell the difference.

The recording declines (:func:`take` returns None, and the explorer builds each run afresh)
whenever it meets state it cannot put back exactly: a task whose coroutine has started, an
object of a class with C-level state (a ``random.Random``, a subclass of a builtin type), a
generator or any other object it does not know, a non-empty set (whose iteration order a
rebuilt one need not share), an empty closure cell.
"""

from __future__ import annotations

import enum
import sys
import types
from collections import deque
from typing import TYPE_CHECKING, Any

from greenlet import greenlet

if TYPE_CHECKING:
    from memcgsim.explore.world import World
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.task import Task

__all__ = ["Snapshot", "take"]

#: values holding no mutable state of a run (immutable, or global: classes, modules, code)
_ATOMS = (int, str, float, bool, type(None), bytes, complex, range, type, types.ModuleType,
          types.BuiltinFunctionType, types.CodeType, enum.Enum, types.MethodDescriptorType,
          types.WrapperDescriptorType)

#: marks a __slots__ member that is not set
_UNSET = object()


class _Declined(Exception):
    """The state holds something a snapshot cannot restore exactly."""


def _plain_class(cls: type) -> bool:
    """Instances keep all their state in __dict__ and __slots__: every class of the MRO but
    ``object`` is defined in a Python source file (an extension type's instances, such as
    ``random.Random``'s C base, may hold state no attribute shows)."""
    for c in cls.__mro__:
        if c is object:
            continue
        mod = sys.modules.get(c.__module__)
        if not str(getattr(mod, "__file__", "")).endswith(".py"):
            return False
    return True


class Snapshot:
    """The recorded contents of every mutable object of a kernel and its world."""

    __slots__ = ("cells", "deques", "dicts", "in_use", "kernel", "lists", "sets", "slotted",
                 "unstarted", "world")

    def __init__(self, k: Kernel, w: World) -> None:
        self.kernel = k
        self.world = w
        #: a run is using the kernel (set by the explorer; a kernel whose run did not finish
        #: is not restored)
        self.in_use = False
        #: (dict, contents): plain dicts and every object's __dict__
        self.dicts: list[tuple[dict[Any, Any], dict[Any, Any]]] = []
        self.lists: list[tuple[list[Any], list[Any]]] = []
        #: sets, empty when recorded
        self.sets: list[set[Any]] = []
        self.deques: list[tuple[deque[Any], list[Any]]] = []
        self.cells: list[tuple[types.CellType, Any]] = []
        #: (object, ((member, value or _UNSET), ...)) of objects with __slots__
        self.slotted: list[tuple[Any, tuple[tuple[str, Any], ...]]] = []
        #: tasks spawned but not started: each gets a parked coroutine at restore, as spawn()
        #: gives it one
        self.unstarted: list[Task] = []

    def restore(self) -> None:
        """Put every recorded object back as it was (the previous run's tasks must have been
        unwound: Kernel.kill_tasks)."""
        for d, saved in self.dicts:
            d.clear()
            d.update(saved)
        for lst, items in self.lists:
            lst[:] = items
        for s in self.sets:
            s.clear()
        for dq, items in self.deques:
            dq.clear()
            dq.extend(items)
        for cell, value in self.cells:
            cell.cell_contents = value
        for obj, members in self.slotted:
            for name, value in members:
                if value is _UNSET:
                    if hasattr(obj, name):
                        delattr(obj, name)
                else:
                    setattr(obj, name, value)
        k = self.kernel
        for t in self.unstarted:
            t.glet = k.parked_coroutine()


def take(k: Kernel, w: World) -> Snapshot | None:
    """Record the state reachable from ``k`` and ``w``; None if it cannot be restored
    exactly (see the module doc)."""
    snap = Snapshot(k, w)
    try:
        _record(snap, k, w)
    except _Declined:
        return None
    return snap


def _record(snap: Snapshot, k: Kernel, w: World) -> None:
    seen: set[int] = set()
    # The coroutines: the scheduler's (the main one) is kept; a spawned task that has not
    # started holds a parked coroutine, handed back to the pool when the run is unwound.
    coroutines: set[int] = set()
    if k._sched_glet is not None:
        coroutines.add(id(k._sched_glet))
    for t in k.tasks:
        if t.glet is not None:
            if t.start is None:
                raise _Declined(f"task {t.name} has started")
            coroutines.add(id(t.glet))
            snap.unstarted.append(t)
    unstarted = {id(t) for t in snap.unstarted}
    todo: list[Any] = [k, w]
    while todo:
        x = todo.pop()
        if isinstance(x, _ATOMS) or id(x) in seen:
            continue
        seen.add(id(x))
        cls = type(x)
        if cls is list:
            snap.lists.append((x, list(x)))
            todo.extend(x)
        elif cls is dict:
            snap.dicts.append((x, dict(x)))
            todo.extend(x)
            todo.extend(x.values())
        elif cls is tuple or cls is frozenset:
            todo.extend(x)
        elif cls is set:
            if x:
                raise _Declined("a non-empty set")
            snap.sets.append(x)
        elif cls is deque:
            snap.deques.append((x, list(x)))
            todo.extend(x)
        elif cls is types.FunctionType:
            for cell in x.__closure__ or ():
                todo.append(cell)
        elif cls is types.CellType:
            try:
                v = x.cell_contents
            except ValueError:
                raise _Declined("an empty closure cell") from None
            snap.cells.append((x, v))
            todo.append(v)
        elif cls is types.MethodType:
            todo.append(x.__self__)
            todo.append(x.__func__)
        elif cls is greenlet:
            if id(x) not in coroutines:
                raise _Declined("a coroutine")
        elif _plain_class(cls):
            d = getattr(x, "__dict__", None)
            if d is not None:
                saved = dict(d)
                if id(x) in unstarted:
                    saved["glet"] = None
                snap.dicts.append((d, saved))
                todo.extend(saved.values())
            members = []
            for c in cls.__mro__:
                slots = c.__dict__.get("__slots__", ())
                for name in (slots,) if isinstance(slots, str) else slots:
                    if name in ("__dict__", "__weakref__"):
                        continue
                    v = getattr(x, name, _UNSET)
                    members.append((name, v))
                    if v is not _UNSET:
                        todo.append(v)
            if members:
                snap.slotted.append((x, tuple(members)))
        else:
            raise _Declined(f"an object of type {cls.__name__}")
