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
- the grace-period kthread's steps are dependent with every access to the RCU state but a
  CPU's read-side nesting word and the invocation of a ready callback (call_rcu,
  synchronize_rcu, rcu_barrier), and besides:
  a grace-period *start* (``gp_start``: snapshot of the CPUs that are readers) with every step
  after which some CPU is in a read-side section it was not in before the step (it entered
  one, or left one and entered another: preempt_disable() and local_irq_save() do that
  without a scheduling point, so the runtime compares each CPU's state around the step); a
  grace-period *end* (``gp_end``) with every step that reported the quiescent state it
  waited for.  A step that only leaves a section commutes with a start: starting before it,
  the grace period waits for the CPU and the step reports it; starting after, it does not
  wait; either way it waits for that CPU no more.  Grace-period ends read no CPU's state;
- a footprint of ``None`` (a task that starts or resumes from a wait, whose next access is not
  known yet) is dependent with everything.
"""

from __future__ import annotations

from memcgsim.kernel.task import Access, AccessKind

__all__ = ["Footprint", "dependent", "depends", "footprint"]

# Run.rcu_flags bits (memcgsim.explore.runtime.RCU_*), repeated to keep this module a leaf
_RCU_CHANGED = 1
_RCU_ENTER = 2
_RCU_QS = 4

_MODE_WORD = {"percpu": "percpu_count_ptr", "flags": "percpu_count_ptr",
              "percpu_count_ptr": "percpu_count_ptr"}


class Footprint:
    """A pre-digested :class:`Access`: allocation, object, canonical field, kind."""

    __slots__ = ("alloc", "enter", "field", "gp", "obj", "qs", "rcu", "rcu_state", "slab",
                 "wildcard", "writes")

    def __init__(self, acc: Access | None, rcu: int = 0, gp: bool = False,
                 rcu_alloc: str = "") -> None:
        #: changed the RCU signature (see memcgsim.explore.runtime.Run)
        self.rcu = bool(rcu & _RCU_CHANGED) or gp
        #: left some CPU in a read-side section it entered during the step
        self.enter = bool(rcu & _RCU_ENTER)
        #: reported a quiescent state the current grace period waited for
        self.qs = bool(rcu & _RCU_QS)
        #: a step of the grace-period kthread
        self.gp = gp
        self.rcu_state = False
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
        #: an access to the RCU state other than a CPU's nesting word (rcu_read_lock) or
        #: the invocation of a callback whose grace period has ended (``done<cpu>``)
        self.rcu_state = bool(rcu_alloc) and self.alloc == rcu_alloc \
            and not f.startswith("cpu") and not f.startswith("done")

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
    if a.wildcard or b.wildcard:
        return True
    if a.gp or b.gp:
        if a.gp and b.gp:
            return True
        g, o = (a, b) if a.gp else (b, a)
        if o.rcu_state:
            return True
        if g.field == "gp_start":
            return o.enter
        if g.field == "gp_end":
            return o.qs
        return o.rcu
    if not a.alloc or not b.alloc or a.alloc != b.alloc:
        return False
    if a.slab or b.slab:
        return True
    if a.obj != b.obj:
        return False
    if a.field != b.field and a.field != "*" and b.field != "*":
        return False
    return a.writes or b.writes


def depends(earlier: Footprint, later: Footprint) -> bool:
    """:func:`dependent`, for two steps in this order: a grace-period start *after* a step
    that entered a read-side section must be tried before it, one *before* it need not.

    Starting earlier only shrinks what the grace period waits for: from the state after
    ``start; enter`` every step that is possible after ``enter; start`` is possible and leads
    to the same state but for a smaller set of CPUs still waited for, which nothing but the
    grace period's end reads.  So DPOR reverses ``enter ... start`` (and a sleeping reader is
    woken by a start) but not ``start ... enter`` (a sleeping start stays asleep over an
    enter): the order explored is always the one that covers the other.
    """
    if earlier.gp and earlier.field == "gp_start" and not later.gp and not later.wildcard \
            and not later.rcu_state:
        return False
    if later.gp and later.field == "gp_end" and not earlier.gp and not earlier.wildcard:
        return earlier.qs
    return dependent(earlier, later)
