"""The cgroup core (kernel/cgroup/cgroup.c, include/linux/cgroup.h, as of 5.3).

Lifecycle of a cgroup on the default (v2) hierarchy, as modelled:

- ``mkdir`` (cgroup_mkdir): cgroup_create() allocates the cgroup and its self css
  (percpu_ref_init), counts it in every ancestor's ``nr_descendants`` and pins the parent; then
  css_create() runs each enabled subsystem's ``css_alloc`` (memcg brings kmem online *here*,
  before the css refcount exists), init_and_link_css() (pins the cgroup and the parent css),
  percpu_ref_init() of the css refcount and online_css().
- ``rmdir`` (cgroup_rmdir): EBUSY while the cgroup is populated or has an online child;
  otherwise cgroup_destroy_locked() kills every css (kill_css: css_get, then
  percpu_ref_kill_and_confirm), moves the cgroup from ``nr_descendants`` to
  ``nr_dying_descendants`` in its ancestors and kills the self css.
- the confirm callback (css_killed_ref_fn, after a grace period, in RCU callback context)
  queues css_killed_work_fn, which calls the subsystem's ``css_offline`` (memcg reparents
  here) and drops kill_css's reference; parents are offlined only after their children.
- when a css's count reaches zero, css_release queues css_release_work_fn, which unlinks it
  (the self css: decrements ancestors' ``nr_dying_descendants``) and queues
  css_free_rwork_fn after a further grace period, which frees it and drops its pins on the
  cgroup and the parent css.

Model simplifications: one hierarchy (the default one); no threaded cgroups, freezer, bpf,
psi or rstat; kernfs is a name table per cgroup; ``cgroup_kn_lock_live`` is cgroup_mutex plus
a liveness check.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from memcgsim.kernel.errno import (
    EAGAIN,
    EBUSY,
    EEXIST,
    EINVAL,
    ENODEV,
    ENOENT,
    ENOMEM,
    ENOTDIR,
    KernelError,
)
from memcgsim.kernel.heap import kfree, kfree_rcu, kzalloc
from memcgsim.kernel.idr import Ida
from memcgsim.kernel.list import (
    ListHead,
    list_add_tail_rcu,
    list_del_rcu,
    list_entries,
    list_for_each_entry_rcu,
)
from memcgsim.kernel.locking import (
    Mutex,
    Spinlock,
    mutex_lock,
    mutex_unlock,
    spin_lock_irq,
    spin_lock_irqsave,
    spin_unlock_irq,
    spin_unlock_irqrestore,
)
from memcgsim.kernel.objects import KObject, LazyMember
from memcgsim.kernel.percpu_ref import (
    PercpuRef,
    percpu_ref_exit,
    percpu_ref_get_many,
    percpu_ref_init,
    percpu_ref_kill,
    percpu_ref_kill_and_confirm,
    percpu_ref_put_many,
    percpu_ref_read,
    percpu_ref_tryget,
    percpu_ref_tryget_live,
)
from memcgsim.kernel.rcu import RcuHead, rcu_assign_pointer, rcu_read_lock, rcu_read_unlock
from memcgsim.kernel.task import AccessKind, Task
from memcgsim.kernel.workqueue import (
    RcuWork,
    Workqueue,
    WorkStruct,
    alloc_workqueue,
    queue_rcu_work,
    queue_work,
)

if TYPE_CHECKING:
    from memcgsim.kernel.kernel import Kernel

__all__ = [
    "CSS_DYING",
    "CSS_NO_REF",
    "CSS_ONLINE",
    "CSS_RELEASED",
    "Cgroup",
    "CgroupGlobals",
    "CgroupSubsys",
    "CgroupSubsysState",
    "CssSet",
    "cgroup_attach_task",
    "cgroup_css",
    "cgroup_init",
    "cgroup_is_dead",
    "cgroup_is_populated",
    "cgroup_lookup",
    "cgroup_mkdir",
    "cgroup_parent",
    "cgroup_path",
    "cgroup_rmdir",
    "cgroup_subtree_control_write",
    "css_get",
    "css_get_many",
    "css_put",
    "css_put_many",
    "css_refcount",
    "css_tryget",
    "css_tryget_online",
    "sys_mkdir",
    "sys_rmdir",
]

# css->flags (include/linux/cgroup-defs.h)
CSS_NO_REF = 1 << 0
CSS_ONLINE = 1 << 1
CSS_RELEASED = 1 << 2
CSS_VISIBLE = 1 << 3
CSS_DYING = 1 << 4

INT_MAX = (1 << 31) - 1

#: Interface files of every cgroup (cgroup core cftypes on the default hierarchy).
#: The set memcgsim.cgroupfs serves (cgroup.freeze is left out: no freezer in the model).
CGROUP_CORE_FILES = (
    "cgroup.type", "cgroup.procs", "cgroup.threads", "cgroup.controllers",
    "cgroup.subtree_control", "cgroup.events", "cgroup.max.descendants", "cgroup.max.depth",
    "cgroup.stat", "cgroup.kill",
)


#: enum members as module constants (AccessKind.X is a slow metaclass lookup)
_READ = AccessKind.READ
_WRITE = AccessKind.WRITE
_RMW = AccessKind.RMW


class CgroupSubsys:
    """struct cgroup_subsys: a controller's name, id and lifecycle callbacks.

    ``css_alloc`` returns the new css or a negative errno; ``css_online`` returns 0 or a
    negative errno.  Subclasses override what their controller implements.
    """

    name = "none"
    #: interface files the controller adds to non-root cgroups
    files: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.id = -1
        self.css_idr = Ida(f"{self.name}_css_idr")

    def css_alloc(self, k: Kernel, parent_css: CgroupSubsysState | None
                  ) -> CgroupSubsysState | int:
        raise NotImplementedError

    def css_online(self, k: Kernel, css: CgroupSubsysState) -> int:
        return 0

    def css_offline(self, k: Kernel, css: CgroupSubsysState) -> None:
        pass

    def css_released(self, k: Kernel, css: CgroupSubsysState) -> None:
        pass

    def css_free(self, k: Kernel, css: CgroupSubsysState) -> None:
        raise NotImplementedError


class CgroupSubsysState(KObject):
    """struct cgroup_subsys_state: the refcounted per-controller part of a cgroup.

    Also the ``self`` css embedded in every struct cgroup (``ss is None``).
    """

    ktype = "struct cgroup_subsys_state"

    # Made on first use (LazyMember), at the same place in the allocation.
    sibling: LazyMember[ListHead] = LazyMember(
        lambda css: ListHead(css._kowner, css._kpath + "sibling"))
    children: LazyMember[ListHead] = LazyMember(
        lambda css: ListHead(css._kowner, css._kpath + "children"))
    destroy_work: LazyMember[WorkStruct] = LazyMember(
        lambda css: WorkStruct(css._kowner, css._kpath + "destroy_work"))
    destroy_rwork: LazyMember[RcuWork] = LazyMember(
        lambda css: RcuWork(css._kowner, css._kpath + "destroy_rwork"))

    def __init__(self, owner: KObject | None = None, path: str = "css") -> None:
        super().__init__()
        if owner is not None:
            self.embed(owner, path)
        me: KObject = owner if owner is not None else self
        pre = f"{path}." if owner is not None else ""
        self.cgroup: Cgroup | None = None
        self.ss: CgroupSubsys | None = None
        self.refcnt = PercpuRef(me, pre + "refcnt")
        self.id = -1
        self.flags = 0
        self.serial_nr = 0
        self.online_cnt = 0
        self.parent: CgroupSubsysState | None = None

    def _klabel(self) -> str:
        return cgroup_path(self.cgroup) if self.cgroup is not None else ""


class Cgroup(KObject):
    """struct cgroup on the default hierarchy."""

    ktype = "struct cgroup"
    ksize = 1024

    def __init__(self, name: str = "") -> None:
        super().__init__()
        #: struct cgroup_subsys_state self
        self.self_css = CgroupSubsysState(self, "self")
        self.self_css.cgroup = self
        self.name = name
        self.id = -1
        self.level = 0
        self.nr_descendants = 0
        self.nr_dying_descendants = 0
        self.max_descendants = INT_MAX
        self.max_depth = INT_MAX
        self.nr_populated_csets = 0
        self.nr_populated_domain_children = 0
        #: cgrp->subsys[]: the online css of each controller (RCU pointers)
        self.subsys: dict[int, CgroupSubsysState | None] = {}
        #: controllers enabled for the children (cgroup.subtree_control)
        self.subtree_control: set[str] = set()
        #: css_sets linked to this cgroup (cgrp->cset_links)
        self.cset_links: list[CssSet] = []
        #: kernfs directory entries: live children by name
        self.kn_children: dict[str, Cgroup] = {}
        #: the kernfs node was removed (rmdir)
        self.kn_removed = False
        self.parent_cgroup: Cgroup | None = None

    def _klabel(self) -> str:
        return cgroup_path(self)

    @property
    def path(self) -> str:
        return cgroup_path(self)


class CssSet(KObject):
    """struct css_set: the set of csses a group of tasks belongs to."""

    ktype = "struct css_set"
    ksize = 512

    def __init__(self) -> None:
        super().__init__()
        self.refcount = 0
        self.subsys: dict[int, CgroupSubsysState] = {}
        self.dfl_cgrp: Cgroup | None = None
        self.tasks: list[Task] = []
        self.dead = False
        self.rcu = RcuHead(self, "rcu_head")

    def _klabel(self) -> str:
        return cgroup_path(self.dfl_cgrp) if self.dfl_cgrp is not None else ""


class CgroupGlobals:
    """The cgroup core's global state: cgrp_dfl_root, css_set_lock, cgroup_mutex..."""

    def __init__(self, k: Kernel, subsystems: list[CgroupSubsys]) -> None:
        self.css_set_lock = Spinlock("css_set_lock")
        self.cgroup_mutex = Mutex("cgroup_mutex")
        k.heap.adopt(self.css_set_lock, "cgroup_init", static=True)
        k.heap.adopt(self.cgroup_mutex, "cgroup_init", static=True)
        self.cgroup_destroy_wq: Workqueue = alloc_workqueue(k, "cgroup_destroy")
        self.subsystems = subsystems
        for i, ss in enumerate(subsystems):
            ss.id = i
            k.heap.adopt(ss.css_idr, "cgroup_init", static=True)
        self.cgroup_idr = Ida("cgroup_idr")
        k.heap.adopt(self.cgroup_idr, "cgroup_init", static=True)
        self.root = Cgroup("")
        k.heap.adopt(self.root, "cgroup_init", static=True)
        self.init_css_set = CssSet()
        k.heap.adopt(self.init_css_set, "cgroup_init", static=True)
        self.css_set_table: dict[tuple[int, ...], CssSet] = {}
        self.css_serial_nr_next = 1

    def subsys(self, name: str) -> CgroupSubsys:
        for ss in self.subsystems:
            if ss.name == name:
                return ss
        raise KeyError(name)


# ---------------------------------------------------------------------- references
def css_get(k: Kernel, css: CgroupSubsysState) -> None:
    """css_get(): the root's csses are CSS_NO_REF and not counted."""
    if not k.load(css, "flags") & CSS_NO_REF:
        percpu_ref_get_many(k, css.refcnt, 1)


def css_get_many(k: Kernel, css: CgroupSubsysState, n: int) -> None:
    if not k.load(css, "flags") & CSS_NO_REF:
        percpu_ref_get_many(k, css.refcnt, n)


def css_put(k: Kernel, css: CgroupSubsysState) -> None:
    if not k.load(css, "flags") & CSS_NO_REF:
        percpu_ref_put_many(k, css.refcnt, 1)


def css_put_many(k: Kernel, css: CgroupSubsysState, n: int) -> None:
    if not k.load(css, "flags") & CSS_NO_REF:
        percpu_ref_put_many(k, css.refcnt, n)


def css_tryget(k: Kernel, css: CgroupSubsysState) -> bool:
    """css_tryget(): succeeds unless the count has reached zero (online or not)."""
    if not k.load(css, "flags") & CSS_NO_REF:
        return percpu_ref_tryget(k, css.refcnt)
    return True


def css_tryget_online(k: Kernel, css: CgroupSubsysState) -> bool:
    """css_tryget_online(): fails once the css has been killed."""
    if not k.load(css, "flags") & CSS_NO_REF:
        return percpu_ref_tryget_live(k, css.refcnt)
    return True


def css_refcount(css: CgroupSubsysState) -> int | None:
    """The css's reference count as a whole-state reader sees it; None for CSS_NO_REF."""
    if css.flags & CSS_NO_REF:
        return None
    return percpu_ref_read(css.refcnt)


def cgroup_is_dead(cgrp: Cgroup) -> bool:
    """cgroup_is_dead(): the self css is no longer online (rmdir has run)."""
    return not cgrp.self_css.flags & CSS_ONLINE


def cgroup_get_live(k: Kernel, cgrp: Cgroup) -> None:
    """cgroup_get_live(): WARN if the cgroup is already dead."""
    k.warn_on(cgroup_is_dead(cgrp), f"cgroup_get_live({cgroup_path(cgrp)}) on a dead cgroup")
    css_get(k, cgrp.self_css)


def cgroup_put(k: Kernel, cgrp: Cgroup) -> None:
    css_put(k, cgrp.self_css)


def cgroup_parent(cgrp: Cgroup) -> Cgroup | None:
    return cgrp.parent_cgroup


def cgroup_css(k: Kernel, cgrp: Cgroup, ss: CgroupSubsys) -> CgroupSubsysState | None:
    """cgroup_css(): the cgroup's online css of ``ss`` (an RCU-protected pointer)."""
    k.access(cgrp, f"subsys[{ss.id}]", _READ)
    return cgrp.subsys.get(ss.id)


def cgroup_e_css(k: Kernel, cgrp: Cgroup, ss: CgroupSubsys) -> CgroupSubsysState:
    """cgroup_e_css(): the effective css: the nearest ancestor's that has one."""
    c: Cgroup | None = cgrp
    while c is not None:
        css = c.subsys.get(ss.id)
        if css is not None:
            return css
        c = c.parent_cgroup
    raise AssertionError("the root always has every controller's css")


def cgroup_path(cgrp: Cgroup | None) -> str:
    """cgroup_path(): ``/a/b`` relative to the hierarchy's root."""
    if cgrp is None:
        return "?"
    parts = []
    c: Cgroup | None = cgrp
    while c is not None and c.parent_cgroup is not None:
        parts.append(c.name)
        c = c.parent_cgroup
    return "/" + "/".join(reversed(parts))


def cgroup_ancestors(cgrp: Cgroup) -> Iterator[Cgroup]:
    """``cgrp``'s parent, grandparent... up to the root."""
    c = cgrp.parent_cgroup
    while c is not None:
        yield c
        c = c.parent_cgroup


def css_children(css: CgroupSubsysState) -> list[CgroupSubsysState]:
    """Children linked on css->children, live and dying (no scheduling points)."""
    return list_entries(css.children)


# ---------------------------------------------------------------------- populated
def cgroup_is_populated(cgrp: Cgroup) -> bool:
    """cgroup_is_populated(): tasks in the cgroup or in a descendant."""
    return cgrp.nr_populated_csets + cgrp.nr_populated_domain_children > 0


def cgroup_update_populated(cgrp: Cgroup, populated: bool) -> None:
    """cgroup_update_populated(): propagate a css_set's populated change up the tree."""
    adj = 1 if populated else -1
    child: Cgroup | None = None
    c: Cgroup | None = cgrp
    while c is not None:
        was = cgroup_is_populated(c)
        if child is None:
            c.nr_populated_csets += adj
        else:
            c.nr_populated_domain_children += adj
        if was == cgroup_is_populated(c):
            break
        child = c
        c = c.parent_cgroup


def css_set_move_task(task: Task, from_cset: CssSet | None, to_cset: CssSet | None) -> None:
    """css_set_move_task(): relink ``task``; keeps css_set and cgroup populated state."""
    if from_cset is not None:
        from_cset.tasks.remove(task)
        if not from_cset.tasks and from_cset.dfl_cgrp is not None:
            cgroup_update_populated(from_cset.dfl_cgrp, False)
    if to_cset is not None:
        if not to_cset.tasks and to_cset.dfl_cgrp is not None:
            cgroup_update_populated(to_cset.dfl_cgrp, True)
        to_cset.tasks.append(task)


# ---------------------------------------------------------------------- css_set
def _cset_key(subsys: dict[int, CgroupSubsysState], cgrp: Cgroup) -> tuple[int, ...]:
    return (id(cgrp), *(id(subsys[i]) for i in sorted(subsys)))


def find_css_set(k: Kernel, old: CssSet, cgrp: Cgroup) -> CssSet | None:
    """find_css_set(): the css_set for ``cgrp``, referenced; None on allocation failure."""
    g = k.cgroup
    subsys = {ss.id: cgroup_e_css(k, cgrp, ss) for ss in g.subsystems}
    key = _cset_key(subsys, cgrp)
    flags = spin_lock_irqsave(k, g.css_set_lock)
    cset = g.css_set_table.get(key)
    if cset is not None:
        cset.refcount += 1
        spin_unlock_irqrestore(k, g.css_set_lock, flags)
        return cset
    spin_unlock_irqrestore(k, g.css_set_lock, flags)
    cset = kzalloc(k, CssSet)
    if cset is None:
        return None
    cset.refcount = 1
    spin_lock_irq(k, g.css_set_lock)
    cset.dfl_cgrp = cgrp
    cset.subsys = subsys
    g.css_set_table[key] = cset
    # link_css_set(): a non-root cgroup is pinned by every css_set linked to it.
    if cgrp.parent_cgroup is not None:
        cgroup_get_live(k, cgrp)
    cgrp.cset_links.append(cset)
    for css in subsys.values():
        css_get(k, css)
    spin_unlock_irq(k, g.css_set_lock)
    return cset


def put_css_set_locked(k: Kernel, cset: CssSet) -> None:
    """put_css_set_locked(): drop a reference; the last one unlinks and frees the css_set."""
    g = k.cgroup
    k.access(cset, "refcount", _RMW)
    cset.refcount -= 1
    if cset.refcount > 0:
        return
    for css in cset.subsys.values():
        css_put(k, css)
    g.css_set_table.pop(_cset_key(cset.subsys, cset.dfl_cgrp), None)  # type: ignore[arg-type]
    cgrp = cset.dfl_cgrp
    assert cgrp is not None
    cgrp.cset_links.remove(cset)
    if cgrp.parent_cgroup is not None:
        cgroup_put(k, cgrp)
    kfree_rcu(k, cset, "rcu")


def put_css_set(k: Kernel, cset: CssSet) -> None:
    if cset is k.cgroup.init_css_set:
        return
    flags = spin_lock_irqsave(k, k.cgroup.css_set_lock)
    put_css_set_locked(k, cset)
    spin_unlock_irqrestore(k, k.cgroup.css_set_lock, flags)


def cgroup_post_fork(k: Kernel, task: Task) -> None:
    """cgroup_post_fork(): the child joins its parent's css_set (init's outside any task)."""
    g = k.cgroup
    parent = k.current
    cset = parent.cgroups if parent is not None and parent.cgroups is not None else g.init_css_set
    cset.refcount += 1
    css_set_move_task(task, None, cset)
    task.cgroups = cset


def cgroup_exit(k: Kernel, task: Task) -> None:
    """cgroup_exit() and the css_set put of cgroup_free(), done together at exit."""
    cset = task.cgroups
    if cset is None:
        return
    g = k.cgroup
    spin_lock_irq(k, g.css_set_lock)
    css_set_move_task(task, cset, None)
    spin_unlock_irq(k, g.css_set_lock)
    task.cgroups = None
    put_css_set(k, cset)


def cgroup_attach_task(k: Kernel, dst: Cgroup, task: Task) -> int:
    """cgroup_procs_write() for one task: 0 or a negative errno.

    Fails with -ENODEV if ``dst`` was removed, and with -EBUSY on a cgroup other than the root
    that has controllers enabled in cgroup.subtree_control (no internal processes).
    """
    g = k.cgroup
    mutex_lock(k, g.cgroup_mutex)
    try:
        if cgroup_is_dead(dst):
            return -ENODEV
        if dst.parent_cgroup is not None and dst.subtree_control:
            return -EBUSY
        old = task.cgroups
        if old is not None and old.dfl_cgrp is dst:
            return 0
        cset = find_css_set(k, old, dst)
        if cset is None:
            return -ENOMEM
        spin_lock_irq(k, g.css_set_lock)
        css_set_move_task(task, old, cset)
        rcu_assign_pointer(k, task, "cgroups", cset)
        spin_unlock_irq(k, g.css_set_lock)
        if old is not None:
            put_css_set(k, old)
        return 0
    finally:
        mutex_unlock(k, g.cgroup_mutex)


# ---------------------------------------------------------------------- creation
def init_and_link_css(k: Kernel, css: CgroupSubsysState, ss: CgroupSubsys, cgrp: Cgroup) -> None:
    """init_and_link_css(): the css pins its cgroup and its parent css."""
    cgroup_get_live(k, cgrp)
    css.cgroup = cgrp
    css.ss = ss
    css.id = -1
    css.serial_nr = k.cgroup.css_serial_nr_next
    k.cgroup.css_serial_nr_next += 1
    css.online_cnt = 0
    parent = cgroup_parent(cgrp)
    if parent is not None:
        pcss = cgroup_css(k, parent, ss)
        assert pcss is not None
        css.parent = pcss
        css_get(k, pcss)


def online_css(k: Kernel, css: CgroupSubsysState) -> int:
    """online_css(): ``css_online``, then mark online and publish in cgrp->subsys[]."""
    ss = css.ss
    cgrp = css.cgroup
    assert ss is not None and cgrp is not None
    ret = ss.css_online(k, css)
    if ret == 0:
        k.store(css, "flags", css.flags | CSS_ONLINE)
        k.access(cgrp, f"subsys[{ss.id}]", _WRITE)
        cgrp.subsys[ss.id] = css
        k.rmw(css, "online_cnt", lambda c: c + 1)
        if css.parent is not None:
            k.rmw(css.parent, "online_cnt", lambda c: c + 1)
    return ret


def offline_css(k: Kernel, css: CgroupSubsysState) -> None:
    """offline_css(): ``css_offline``, then clear CSS_ONLINE and cgrp->subsys[]."""
    ss = css.ss
    cgrp = css.cgroup
    assert ss is not None and cgrp is not None
    if not k.load(css, "flags") & CSS_ONLINE:
        return
    k.trace("css_offline", ss.name, cgroup_path(cgrp))
    ss.css_offline(k, css)
    k.store(css, "flags", css.flags & ~CSS_ONLINE)
    k.access(cgrp, f"subsys[{ss.id}]", _WRITE)
    cgrp.subsys[ss.id] = None


def css_create(k: Kernel, cgrp: Cgroup, ss: CgroupSubsys) -> CgroupSubsysState | int:
    """css_create(): allocate, link and online ``ss``'s css for ``cgrp``; or a negative errno.

    A failure after css_alloc skips kill, offline and release: the css goes straight to
    css_free_rwork_fn after a grace period.
    """
    parent = cgroup_parent(cgrp)
    assert parent is not None
    parent_css = cgroup_css(k, parent, ss)
    css = ss.css_alloc(k, parent_css)
    if isinstance(css, int):
        return css
    init_and_link_css(k, css, ss, cgrp)
    err = percpu_ref_init(k, css.refcnt, css_release, 0)
    if err == 0:
        cid = ss.css_idr.alloc(k, 2, INT_MAX)
        if cid < 0:
            err = cid
        else:
            css.id = cid
            assert parent_css is not None
            list_add_tail_rcu(k, css.sibling, parent_css.children)
            err = online_css(k, css)
            if err == 0:
                k.trace("css_online", ss.name, cgroup_path(cgrp))
                return css
            list_del_rcu(k, css.sibling)
    css.destroy_rwork.work.func = css_free_rwork_fn
    queue_rcu_work(k, k.cgroup.cgroup_destroy_wq, css.destroy_rwork)
    return err


def cgroup_create(k: Kernel, parent: Cgroup, name: str) -> Cgroup | int:
    """cgroup_create(): allocate the cgroup and its self css; count it in the ancestors."""
    g = k.cgroup
    cgrp = kzalloc(k, Cgroup, name)
    if cgrp is None:
        return -ENOMEM
    ret = percpu_ref_init(k, cgrp.self_css.refcnt, css_release, 0)
    if ret:
        kfree(k, cgrp)
        return ret
    cid = g.cgroup_idr.alloc(k, 2, INT_MAX)
    if cid < 0:
        percpu_ref_exit(k, cgrp.self_css.refcnt)
        kfree(k, cgrp)
        return -ENOMEM
    cgrp.id = cid
    # init_cgroup_housekeeping()
    cgrp.self_css.flags |= CSS_ONLINE
    cgrp.self_css.parent = parent.self_css
    cgrp.parent_cgroup = parent
    cgrp.level = parent.level + 1
    spin_lock_irq(k, g.css_set_lock)
    for tcgrp in cgroup_ancestors(cgrp):
        k.rmw(tcgrp, "nr_descendants", lambda n: n + 1)
    spin_unlock_irq(k, g.css_set_lock)
    cgrp.self_css.serial_nr = g.css_serial_nr_next
    g.css_serial_nr_next += 1
    list_add_tail_rcu(k, cgrp.self_css.sibling, parent.self_css.children)
    cgroup_get_live(k, parent)
    return cgrp


def cgroup_check_hierarchy_limits(parent: Cgroup) -> bool:
    """cgroup_check_hierarchy_limits(): cgroup.max.descendants and cgroup.max.depth."""
    depth = 0
    c: Cgroup | None = parent
    while c is not None:
        if c.nr_descendants >= c.max_descendants:
            return False
        depth += 1
        if depth > c.max_depth:
            return False
        c = c.parent_cgroup
    return True


def cgroup_mkdir(k: Kernel, parent: Cgroup, name: str) -> Cgroup | int:
    """cgroup_mkdir(): create ``name`` under ``parent``; the new cgroup or a negative errno."""
    g = k.cgroup
    if "\n" in name:
        return -EINVAL
    mutex_lock(k, g.cgroup_mutex)
    try:
        # cgroup_kn_lock_live()
        if cgroup_is_dead(parent):
            return -ENODEV
        if name in parent.kn_children:
            return -EEXIST
        if not cgroup_check_hierarchy_limits(parent):
            return -EAGAIN
        res = cgroup_create(k, parent, name)
        if isinstance(res, int):
            return res
        cgrp = res
        parent.kn_children[name] = cgrp  # kernfs_create_dir()
        k.trace("mkdir", cgroup_path(cgrp))
        # cgroup_apply_control_enable(): the controllers the parent enables for its children.
        for ss in g.subsystems:
            if ss.name in parent.subtree_control:
                css = css_create(k, cgrp, ss)
                if isinstance(css, int):
                    k.trace("mkdir_failed", cgroup_path(cgrp), ss.name, css)
                    cgroup_destroy_locked(k, cgrp)
                    return css
        return cgrp
    finally:
        mutex_unlock(k, g.cgroup_mutex)


def cgroup_subtree_control_write(k: Kernel, cgrp: Cgroup, buf: str) -> int:
    """cgroup_subtree_control_write(): ``+memory -memory`` tokens; 0 or a negative errno.

    Enabling needs the controller in the parent's subtree_control (-ENOENT otherwise) and, on
    a non-root cgroup, no processes in it (-EBUSY: no internal processes); disabling fails
    with -EBUSY while a child still enables it.  Children get or lose their css
    (cgroup_apply_control) and their tasks move to css_sets with the new effective csses.
    """
    g = k.cgroup
    enable: set[str] = set()
    disable: set[str] = set()
    names = {ss.name for ss in g.subsystems}
    for tok in buf.split():
        if len(tok) < 2 or tok[0] not in "+-" or tok[1:] not in names:
            return -EINVAL
        if tok[0] == "+":
            enable.add(tok[1:])
            disable.discard(tok[1:])
        else:
            disable.add(tok[1:])
            enable.discard(tok[1:])
    mutex_lock(k, g.cgroup_mutex)
    try:
        if cgroup_is_dead(cgrp):
            return -ENODEV
        parent = cgroup_parent(cgrp)
        enable -= cgrp.subtree_control
        disable &= cgrp.subtree_control
        if parent is not None:
            if enable - parent.subtree_control:
                return -ENOENT
            if enable and cgrp.nr_populated_csets:
                return -EBUSY
        kids = [c for c in css_children(cgrp.self_css)
                if isinstance(c, Cgroup) and not cgroup_is_dead(c)]
        for name in disable:
            if any(name in c.subtree_control for c in kids):
                return -EBUSY
        cgrp.subtree_control |= enable
        cgrp.subtree_control -= disable
        for child in kids:
            for ss in g.subsystems:
                css = child.subsys.get(ss.id)
                if ss.name in enable and css is None:
                    res = css_create(k, child, ss)
                    if isinstance(res, int):
                        cgrp.subtree_control -= enable
                        return res
                elif ss.name in disable and css is not None:
                    kill_css(k, css)
            _update_dfl_csses(k, child)
        return 0
    finally:
        mutex_unlock(k, g.cgroup_mutex)


def _update_dfl_csses(k: Kernel, cgrp: Cgroup) -> None:
    """cgroup_update_dfl_csses(): move the cgroup's tasks to css_sets with its current csses."""
    for cset in list(cgrp.cset_links):
        for task in list(cset.tasks):
            new = find_css_set(k, cset, cgrp)
            if new is None or new is cset:
                if new is cset:
                    put_css_set(k, new)
                continue
            spin_lock_irq(k, k.cgroup.css_set_lock)
            css_set_move_task(task, cset, new)
            rcu_assign_pointer(k, task, "cgroups", new)
            spin_unlock_irq(k, k.cgroup.css_set_lock)
            put_css_set(k, cset)


# ---------------------------------------------------------------------- destruction
def css_has_online_children(k: Kernel, css: CgroupSubsysState) -> bool:
    """css_has_online_children(): any child css still CSS_ONLINE (dying ones are not)."""
    ret = False
    rcu_read_lock(k)
    for child in list_for_each_entry_rcu(k, css.children):
        assert isinstance(child, KObject)
        ccss = child.self_css if isinstance(child, Cgroup) else child
        if k.load(ccss, "flags") & CSS_ONLINE:
            ret = True
            break
    rcu_read_unlock(k)
    return ret


def kill_css(k: Kernel, css: CgroupSubsysState) -> None:
    """kill_css(): pin the css until offline, then kill its refcount with a confirm."""
    flags = k.load(css, "flags")
    if flags & CSS_DYING:
        return
    k.store(css, "flags", flags | CSS_DYING)
    css_get(k, css)
    percpu_ref_kill_and_confirm(k, css.refcnt, css_killed_ref_fn)


def css_killed_ref_fn(k: Kernel, ref: PercpuRef) -> None:
    """css_killed_ref_fn(): every CPU sees the kill; offline once no child is online."""
    css = _css_of_ref(ref)
    _, cnt = k.rmw(css, "online_cnt", lambda c: c - 1)
    if cnt == 0:
        css.destroy_work.func = css_killed_work_fn
        queue_work(k, k.cgroup.cgroup_destroy_wq, css.destroy_work)


def css_killed_work_fn(k: Kernel, work: WorkStruct) -> None:
    """css_killed_work_fn(): offline the css, and each ancestor whose last child it was."""
    g = k.cgroup
    css: CgroupSubsysState | None = _css_of_work(work)
    mutex_lock(k, g.cgroup_mutex)
    while True:
        assert css is not None
        offline_css(k, css)
        css_put(k, css)
        css = css.parent
        if css is None:
            break
        _, cnt = k.rmw(css, "online_cnt", lambda c: c - 1)
        if cnt != 0:
            break
    mutex_unlock(k, g.cgroup_mutex)


def cgroup_destroy_locked(k: Kernel, cgrp: Cgroup) -> int:
    """cgroup_destroy_locked(): EBUSY, or start destruction; cgroup_mutex held."""
    g = k.cgroup
    if cgroup_is_populated(cgrp):
        return -EBUSY
    if css_has_online_children(k, cgrp.self_css):
        return -EBUSY
    k.store(cgrp.self_css, "flags", cgrp.self_css.flags & ~CSS_ONLINE)
    spin_lock_irq(k, g.css_set_lock)
    for cset in cgrp.cset_links:
        cset.dead = True
    spin_unlock_irq(k, g.css_set_lock)
    for ss in g.subsystems:
        css = cgrp.subsys.get(ss.id)
        if css is not None:
            kill_css(k, css)
    # kernfs_remove()
    parent = cgroup_parent(cgrp)
    if parent is not None and parent.kn_children.get(cgrp.name) is cgrp:
        del parent.kn_children[cgrp.name]
    cgrp.kn_removed = True
    spin_lock_irq(k, g.css_set_lock)
    for tcgrp in cgroup_ancestors(cgrp):
        k.rmw(tcgrp, "nr_descendants", lambda n: n - 1)
        k.rmw(tcgrp, "nr_dying_descendants", lambda n: n + 1)
    spin_unlock_irq(k, g.css_set_lock)
    k.trace("rmdir", cgroup_path(cgrp))
    percpu_ref_kill(k, cgrp.self_css.refcnt)
    return 0


def cgroup_rmdir(k: Kernel, cgrp: Cgroup) -> int:
    """cgroup_rmdir(): 0 or a negative errno (-EBUSY)."""
    g = k.cgroup
    mutex_lock(k, g.cgroup_mutex)
    try:
        if cgroup_is_dead(cgrp):
            return 0
        return cgroup_destroy_locked(k, cgrp)
    finally:
        mutex_unlock(k, g.cgroup_mutex)


def css_release(k: Kernel, ref: PercpuRef) -> None:
    """css_release(): the percpu_ref release of every css; defers to the workqueue."""
    css = _css_of_ref(ref)
    css.destroy_work.func = css_release_work_fn
    queue_work(k, k.cgroup.cgroup_destroy_wq, css.destroy_work)


def css_release_work_fn(k: Kernel, work: WorkStruct) -> None:
    """css_release_work_fn(): unlink the released css; free it after a grace period."""
    g = k.cgroup
    css = _css_of_work(work)
    ss = css.ss
    cgrp = css.cgroup
    assert cgrp is not None
    mutex_lock(k, g.cgroup_mutex)
    k.store(css, "flags", css.flags | CSS_RELEASED)
    list_del_rcu(k, css.sibling)
    if ss is not None:
        ss.css_released(k, css)
        k.trace("css_released", ss.name, cgroup_path(cgrp))
    else:
        spin_lock_irq(k, g.css_set_lock)
        for tcgrp in cgroup_ancestors(cgrp):
            k.rmw(tcgrp, "nr_dying_descendants", lambda n: n - 1)
        spin_unlock_irq(k, g.css_set_lock)
        g.cgroup_idr.remove(k, cgrp.id)
        cgrp.id = -1
        k.trace("cgroup_released", cgroup_path(cgrp))
    mutex_unlock(k, g.cgroup_mutex)
    css.destroy_rwork.work.func = css_free_rwork_fn
    queue_rcu_work(k, g.cgroup_destroy_wq, css.destroy_rwork)


def css_free_rwork_fn(k: Kernel, work: WorkStruct) -> None:
    """css_free_rwork_fn(): free the css a grace period after release; drop its pins."""
    css = _css_of_work(work)
    ss = css.ss
    cgrp = css.cgroup
    assert cgrp is not None
    percpu_ref_exit(k, css.refcnt)
    if ss is not None:
        parent = css.parent
        cid = css.id
        k.trace("css_free", ss.name, cgroup_path(cgrp))
        ss.css_free(k, css)
        if cid >= 0:
            ss.css_idr.remove(k, cid)
        cgroup_put(k, cgrp)
        if parent is not None:
            css_put(k, parent)
    else:
        parent_cgrp = cgroup_parent(cgrp)
        assert parent_cgrp is not None, "the root cgroup is never released"
        k.trace("cgroup_free", cgroup_path(cgrp))
        cgroup_put(k, parent_cgrp)
        kfree(k, cgrp)


def _css_of_ref(ref: PercpuRef) -> CgroupSubsysState:
    """container_of(ref, struct cgroup_subsys_state, refcnt)."""
    owner = ref._kowner
    if isinstance(owner, Cgroup):
        return owner.self_css
    assert isinstance(owner, CgroupSubsysState)
    return owner


def _css_of_work(work: WorkStruct) -> CgroupSubsysState:
    owner = work._kowner
    if isinstance(owner, Cgroup):
        return owner.self_css
    assert isinstance(owner, CgroupSubsysState)
    return owner


# ---------------------------------------------------------------------- boot
def cgroup_init(k: Kernel, subsystems: Sequence[CgroupSubsys],
                root_subtree_control: tuple[str, ...]) -> None:
    """cgroup_init_early() + cgroup_init(): the default root and each controller's root css."""
    g = CgroupGlobals(k, list(subsystems))
    k.cgroup = g
    root = g.root
    root.self_css.flags |= CSS_NO_REF | CSS_ONLINE
    root.self_css.serial_nr = 0
    root.id = g.cgroup_idr.alloc(k, 1, 2)
    cset = g.init_css_set
    cset.refcount = 1
    cset.dfl_cgrp = root
    root.cset_links.append(cset)
    for ss in subsystems:
        # cgroup_init_subsys(): root csses are CSS_NO_REF; their percpu_ref is never set up.
        css = ss.css_alloc(k, None)
        assert not isinstance(css, int), f"root css_alloc of {ss.name} failed"
        css.cgroup = root
        css.ss = ss
        css.flags |= CSS_NO_REF
        css.id = ss.css_idr.alloc(k, 1, 2)
        css.serial_nr = g.css_serial_nr_next
        g.css_serial_nr_next += 1
        cset.subsys[ss.id] = css
        ret = online_css(k, css)
        assert ret == 0
    g.css_set_table[_cset_key(cset.subsys, root)] = cset
    root.subtree_control = {name for name in root_subtree_control
                            if any(ss.name == name for ss in subsystems)}
    for t in k.tasks:
        if t.cgroups is None and not t.exited:
            cset.refcount += 1
            css_set_move_task(t, None, cset)
            t.cgroups = cset
    k._fork_hook = lambda t: cgroup_post_fork(k, t)  # type: ignore[attr-defined]
    k._exit_hook = lambda t: cgroup_exit(k, t)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- path interface
def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def cgroup_lookup(k: Kernel, path: str) -> Cgroup:
    """Resolve ``/a/b`` to a live cgroup (kernfs lookup); KernelError ENOENT / ENOTDIR."""
    c = k.cgroup.root
    for part in _split(path):
        if part == ".":
            continue
        if part == "..":
            c = c.parent_cgroup or c
            continue
        nxt = c.kn_children.get(part)
        if nxt is None:
            if _is_file(k, c, part):
                raise KernelError(ENOTDIR, f"{path}")
            raise KernelError(ENOENT, f"{path}")
        c = nxt
    return c


def _is_file(k: Kernel, cgrp: Cgroup, name: str) -> bool:
    if name in CGROUP_CORE_FILES:
        return True
    if cgrp.parent_cgroup is None:
        return False
    return any(name in ss.files and cgrp.subsys.get(ss.id) is not None
               for ss in k.cgroup.subsystems)


def _parent_and_name(k: Kernel, path: str) -> tuple[Cgroup, str]:
    parts = _split(path)
    if not parts:
        raise KernelError(EEXIST, path or "/")
    parent = cgroup_lookup(k, "/".join(parts[:-1]))
    return parent, parts[-1]


def sys_mkdir(k: Kernel, path: str) -> Cgroup:
    """mkdir(2) in cgroupfs: the new cgroup, or KernelError with the errno mkdir would give."""
    parent, name = _parent_and_name(k, path)
    if name in (".", "..") or name in parent.kn_children or _is_file(k, parent, name):
        raise KernelError(EEXIST, path)
    res = cgroup_mkdir(k, parent, name)
    if isinstance(res, int):
        raise KernelError(res, path)
    return res


def sys_rmdir(k: Kernel, path: str) -> None:
    """rmdir(2) in cgroupfs: KernelError ENOENT, ENOTDIR, EBUSY (or EINVAL for ``.``)."""
    parts = _split(path)
    if not parts:
        raise KernelError(EBUSY, path or "/")
    if parts[-1] == ".":
        raise KernelError(EINVAL, path)
    parent, name = _parent_and_name(k, path)
    cgrp = parent.kn_children.get(name)
    if cgrp is None:
        if _is_file(k, parent, name):
            raise KernelError(ENOTDIR, path)
        raise KernelError(ENOENT, path)
    ret = cgroup_rmdir(k, cgrp)
    if ret < 0:
        raise KernelError(ret, path)


def walk_cgroups(root: Cgroup, *, dying: bool = True) -> Iterator[Cgroup]:
    """Pre-order walk of live (and, with ``dying``, removed but unreleased) cgroups."""
    stack: list[Any] = [root]
    while stack:
        c = stack.pop()
        yield c
        kids = [x for x in css_children(c.self_css) if isinstance(x, Cgroup)]
        if not dying:
            kids = [x for x in kids if not cgroup_is_dead(x)]
        stack.extend(reversed(kids))
