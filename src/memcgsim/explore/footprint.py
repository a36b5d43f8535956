"""Step footprints and their dependence relation (what DPOR and sleep sets commute).

A step's footprint is the access declared at the scheduling point it starts from
(:class:`~memcgsim.kernel.task.Access`): object ``"<allocation id>:<member path>"``, field and
kind.  Two steps are *dependent* (do not commute) when they touch the same location and one of
them writes, with these refinements:

- a free (kfree's ``<slab>`` footprint on the allocation) is dependent with every access to any
  member of that allocation: reordering them turns a use into a use-after-free;
- a ``percpu_ref``'s mode word: the model keeps ``percpu_count_ptr`` as two fields (``percpu``,
  the counter pointer, and ``flags``, its low bits); the three names are one location;
- field ``*`` stands for every field of its object (RCU's grace-period steps);
- a step of the grace-period kthread reads the *RCU signature* (every CPU's read-side state,
  which preempt_disable() and local_irq_save() change without a scheduling point, the grace
  period numbers, the callbacks queued): it is dependent with every step that changed it
  (``gp`` and ``rcu``);
- a footprint of ``None`` (a task that starts or resumes from a wait, whose next access is not
  known yet) is dependent with everything.
"""

from __future__ import annotations

from memcgsim.kernel.task import Access, AccessKind

__all__ = ["Footprint", "dependent", "footprint"]

_MODE_WORD = {"percpu": "percpu_count_ptr", "flags": "percpu_count_ptr",
              "percpu_count_ptr": "percpu_count_ptr"}


class Footprint:
    """A pre-digested :class:`Access`: allocation, object, canonical field, kind."""

    __slots__ = ("alloc", "field", "gp", "obj", "rcu", "slab", "wildcard", "writes")

    def __init__(self, acc: Access | None, rcu: bool = False, gp: bool = False) -> None:
        #: changed the RCU signature (see memcgsim.explore.runtime.Run)
        self.rcu = rcu or gp
        #: a grace-period step: reads (and changes) the RCU signature
        self.gp = gp
        if acc is None:
            self.wildcard = True
            self.alloc = self.obj = self.field = ""
            self.writes = True
            self.slab = False
            return
        self.wildcard = False
        self.obj = acc.obj
        self.alloc = acc.obj.split(":", 1)[0]
        f = acc.field
        if acc.obj.endswith("refcnt.") or acc.obj.endswith("refcnt"):
            f = _MODE_WORD.get(f, f)
        self.field = f
        self.slab = f == "<slab>"
        self.writes = acc.kind.writes
        if acc.kind is AccessKind.NONE:
            self.alloc = ""
            self.writes = False

    @property
    def none(self) -> bool:
        return not self.wildcard and self.alloc == ""

    def __repr__(self) -> str:
        if self.wildcard:
            return "<any>"
        return f"<{self.obj}{self.field} {'w' if self.writes else 'r'}>"


def footprint(acc: Access | None) -> Footprint:
    return Footprint(acc)


def dependent(a: Footprint, b: Footprint) -> bool:
    """True if the two steps may not commute."""
    if a.wildcard or b.wildcard or (a.gp and b.rcu) or (a.rcu and b.gp):
        return True
    if not a.alloc or not b.alloc or a.alloc != b.alloc:
        return False
    if a.slab or b.slab:
        return True
    if a.obj != b.obj:
        return False
    if a.field != b.field and a.field != "*" and b.field != "*":
        return False
    return a.writes or b.writes
