"""Running a scenario on one design: the plan of events, the run, and its metrics.

The plan (instance arrivals, lifetimes, child generations, allocation bursts) comes from a
random generator seeded by the scenario's name and the seed alone, so every design sees the
same events in the same order.  The run drives them through the model at simulated times:
mkdir and rmdir through the cgroup core, allocations by worker tasks (one per CPU) that
move into the cgroup that allocates, frees at instance exit, drop_caches writes.  Between
events the kernel runs until nothing is pending (grace periods, RCU callbacks, offline and
release work), so "dying" counts cgroups that stay dying, not ones waiting a few
milliseconds for a grace period.

``bulk`` selects the allocation path: kmem_cache_alloc_bulk / kmem_cache_free_bulk for a
burst (fast, for scale), or one kmem_cache_alloc / kmem_cache_free per object.  Both leave
the slab pages in the same state.  In bulk mode the first object of every burst still takes
the single-object path, which is where ``alloc_steps_mean`` is sampled.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from memcgsim.kernel.heap import GFP_KERNEL, Gfp
from memcgsim.kernel.kernel import Kernel
from memcgsim.kernel.violations import ViolationKind
from memcgsim.mm.list_lru import list_lru_add, list_lru_add_bulk
from memcgsim.mm.memcontrol import MemCgroup, all_memcgs, drain_all_stock
from memcgsim.mm.slab_common import KmemCache, kmem_cache_by_name
from memcgsim.mm.slub import (
    EMPTY,
    kmem_cache_alloc,
    kmem_cache_alloc_bulk,
    kmem_cache_free,
    kmem_cache_free_bulk,
)
from memcgsim.mm.vmscan import (
    drop_caches,
    mem_cgroup_handle_over_high,
    memcg_set_high,
    memcg_set_max,
)
from memcgsim.workloads.spec import AllocSpec, LifetimeSpec, WorkloadSpec

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from memcgsim.kernel.task import Task

__all__ = ["RunResult", "Runner", "run_workload"]

NS = 1_000_000_000


@dataclass
class RunResult:
    """The metrics of one run (one design, one scenario, one size, one seed)."""

    design: str
    workload: str
    size: str
    seed: int
    bulk: bool
    dying_at_end: int = 0
    dying_peak: int = 0
    dying_timeline: list[tuple[float, int]] = field(default_factory=list)
    dying_caches_at_end: int = 0
    slab_pages_peak: int = 0
    slab_pages_end: int = 0
    slab_utilization: float = 0.0
    pinned_bytes_at_end: int = 0
    #: bytes the per-page ownership vectors take at the end (one pointer per object slot of
    #: every slab page holding an owned object); kmalloc()ed in the kernel, not in the slab
    #: pages counted above
    ownership_vector_bytes: int = 0
    reparent_work_max: int = 0
    reparent_steps_max: int = 0
    reparent_locked_steps_max: int = 0
    reparent_offlines: int = 0
    #: the largest count of each kind of item one offline touched, and the mean items
    reparent_ptrs_max: int = 0
    reparent_objects_max: int = 0
    reparent_caches_max: int = 0
    reparent_work_mean: float = 0.0
    alloc_steps_mean: float = 0.0
    conservation_ok: bool = True
    violations: list[str] = field(default_factory=list)
    cgroups_created: int = 0
    cgroups_removed: int = 0
    objects_allocated: int = 0
    objects_live_end: int = 0
    alloc_failures: int = 0
    reclaimed_objects: int = 0
    memcg_reclaims: int = 0
    sim_seconds: float = 0.0
    wall_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["dying_timeline"] = [[t, n] for t, n in self.dying_timeline]
        d["slab_utilization"] = round(self.slab_utilization, 4)
        d["alloc_steps_mean"] = round(self.alloc_steps_mean, 2)
        d["reparent_work_mean"] = round(self.reparent_work_mean, 2)
        d["sim_seconds"] = round(self.sim_seconds, 3)
        d["wall_seconds"] = round(self.wall_seconds, 3)
        return d


# ====================================================================== the plan
@dataclass(order=True)
class _Event:
    t_ns: int
    seq: int
    kind: str = field(compare=False)
    data: Any = field(compare=False, default=None)


@dataclass
class _Owner:
    """A cgroup the workload created (an instance or one child generation) and the objects
    it will free when it stops."""

    path: str
    parent: _Owner | None
    max: int | None
    high: int | None
    held: list[tuple[KmemCache, NDArray[np.int64]]] = field(default_factory=list)
    children: list[_Owner] = field(default_factory=list)
    own_cgroup: bool = True
    alive: bool = False


def _lifetime(rng: random.Random, lt: LifetimeSpec) -> float:
    if lt.dist == "fixed":
        v = lt.mean_s
    elif lt.dist == "exponential":
        v = rng.expovariate(1.0 / lt.mean_s)
    elif lt.dist == "lognormal":
        mu = math.log(lt.mean_s) - lt.sigma ** 2 / 2
        v = rng.lognormvariate(mu, lt.sigma)
    else:
        # Pareto with mean mean_s: scale = mean * (alpha - 1) / alpha
        xm = lt.mean_s * (lt.alpha - 1) / lt.alpha
        v = xm * rng.paretovariate(lt.alpha)
    if lt.max_s is not None:
        v = min(v, lt.max_s)
    return max(v, 1e-6)


class _Planner:
    def __init__(self, spec: WorkloadSpec, seed: int) -> None:
        self.spec = spec
        self.rng = random.Random(f"{spec.workload.name}/{seed}")
        self.events: list[_Event] = []
        self.seq = 0
        self.end_ns = int(spec.workload.duration_s * NS)

    def add(self, t_s: float, kind: str, data: Any = None) -> None:
        t_ns = min(int(t_s * NS), self.end_ns)
        self.events.append(_Event(t_ns, self.seq, kind, data))
        self.seq += 1

    def _allocs(self, owner: _Owner, allocs: list[AllocSpec], start: float, stop: float) -> None:
        for a in allocs:
            if a.count == 0:
                continue
            per, extra = divmod(a.count, a.bursts)
            span = max(0.0, stop - start)
            for b in range(a.bursts):
                n = per + (1 if b < extra else 0)
                if n:
                    self.add(start + span * b / a.bursts, "alloc", (owner, a, n))

    def plan(self) -> list[_Event]:
        spec = self.spec
        dur = spec.workload.duration_s
        for cg in spec.cgroup:
            self.add(0.0, "mkdir_static", cg)
        for ev in spec.event:
            self.add(ev.at_s, "global", ev)
        t = 0.0
        while t <= dur:
            self.add(t, "sample")
            t += spec.workload.sample_s
        for svc in spec.service:
            seq_t = 0.0
            rate = svc.count / dur if dur else 1.0
            for i in range(svc.count):
                if svc.arrival == "uniform":
                    start = self.rng.uniform(0.0, dur)
                elif svc.arrival == "poisson":
                    seq_t += self.rng.expovariate(rate)
                    start = seq_t
                else:
                    start = seq_t
                life = _lifetime(self.rng, svc.lifetime)
                stop = start + life
                if svc.arrival == "sequential":
                    seq_t = stop
                if start >= dur:
                    continue
                base = svc.parent.rstrip("/")
                path = f"{base}/{svc.name}-{i}" if svc.own_cgroup else svc.parent
                inst = _Owner(path, None, svc.max, svc.high, own_cgroup=svc.own_cgroup)
                self.add(start, "start", inst)
                end = min(stop, dur)
                self._allocs(inst, svc.alloc, start, end)
                for ch in svc.children:
                    g_start = start
                    for g in range(ch.count):
                        if g_start >= end:
                            break
                        if ch.lifetime is None or g == ch.count - 1:
                            g_stop = stop
                        else:
                            g_stop = g_start + _lifetime(self.rng, ch.lifetime)
                        cpath = f"{path}/{ch.name}-{g}"
                        child = _Owner(cpath, inst, ch.max, ch.high)
                        inst.children.append(child)
                        self.add(g_start, "start", child)
                        self._allocs(child, ch.alloc, g_start, min(g_stop, end))
                        if g_stop < dur:
                            self.add(g_stop, "stop", child)
                        g_start = g_stop
                if stop < dur:
                    self.add(stop, "stop", inst)
        self.events.sort()
        return self.events


# ====================================================================== the run
class Runner:
    """One scenario on one design: ``Runner(spec, "objcg").run()``."""

    def __init__(self, spec: WorkloadSpec, design: str, *, size: str = "default",
                 seed: int | None = None, bulk: bool = True, checks: int = 4) -> None:
        self.spec = spec
        self.seed = spec.workload.seed if seed is None else seed
        self.bulk = bulk
        self.size = size
        self.checks = checks
        self.k = Kernel(nr_cpus=spec.workload.cpus, seed=self.seed, design=design,
                        panic_on_violation=False, check_at_quiescence=False,
                        log_events=False)
        self.k.vmscan.bulk_frees = bulk
        self.np_rng = np.random.default_rng(random.Random(f"keep/{self.seed}").getrandbits(64))
        self.result = RunResult(design, spec.workload.name, size, self.seed, bulk)
        self.workers: list[Task] = [self.k.new_process(f"worker/{c}", "/", cpu=c)
                                    for c in range(self.k.nr_cpus)]
        #: the cgroup each worker is in: workers move lazily, and out before an rmdir
        self.where: list[str] = ["/"] * len(self.workers)
        self.kept: list[tuple[KmemCache, NDArray[np.int64]]] = []
        self.alloc_steps = 0
        self.alloc_samples = 0
        self._next_worker = 0
        #: static cgroups that have children (and so enable memory for them)
        self._static_parents = {c.path.rsplit("/", 1)[0] or "/" for c in spec.cgroup} | {
            svc.parent for svc in spec.service if svc.own_cgroup}

    # -- helpers ----------------------------------------------------------------------------
    def _memcg(self, path: str) -> MemCgroup:
        return self.k.mem_cgroup(path)

    def _limits(self, path: str, max_b: int | None, high_b: int | None) -> None:
        k = self.k
        page = k.page_size
        memcg = self._memcg(path)
        if max_b is not None:
            k.call(memcg_set_max, memcg, max_b // page, name="memory.max")
        if high_b is not None:
            k.call(memcg_set_high, memcg, high_b // page, name="memory.high")

    def _worker(self) -> Task:
        """The next worker in turn (for frees, which any CPU may do)."""
        w = self.workers[self._next_worker % len(self.workers)]
        self._next_worker += 1
        return w

    def _move(self, i: int, path: str) -> Task:
        """Worker ``i`` in cgroup ``path`` (one write to cgroup.procs if it is elsewhere)."""
        w = self.workers[i]
        if self.where[i] != path:
            self.k.attach(w, path)
            self.where[i] = path
        return w

    def _evacuate(self, path: str) -> None:
        """Move every worker inside ``path`` (or below it) back to the root."""
        for i, where in enumerate(self.where):
            if where == path or where.startswith(path + "/"):
                self._move(i, "/")

    # -- the task bodies --------------------------------------------------------------------
    def _alloc_body(self, k: Kernel, s: KmemCache, gfp: int, n: int, fate: str
                    ) -> NDArray[np.int64]:
        """What a task does in one burst: allocate, put cached objects on the LRU (or free
        short-lived ones again), and on return to user space reclaim what it pushed over
        memory.high."""
        lru = fate == "lru"
        if self.bulk:
            # The middle object takes the single-object path: its steps are the sample (at an
            # arbitrary position relative to slab boundaries, so the slow path is sampled as
            # often as it happens).
            half = n // 2
            head = kmem_cache_alloc_bulk(k, s, gfp, half) if half else EMPTY
            s0 = k.steps
            mid = kmem_cache_alloc(k, s, gfp)
            self.alloc_steps += k.steps - s0
            self.alloc_samples += 1
            tail = kmem_cache_alloc_bulk(k, s, gfp, n - half - 1) if n - half - 1 else EMPTY
            self.result.alloc_failures += (half - len(head)) + (mid < 0) + (
                n - half - 1 - len(tail))
            parts = [head, np.array([mid] if mid >= 0 else [], dtype=np.int64), tail]
            objs = np.concatenate(parts)
            if lru and s.list_lru is not None and len(objs):
                list_lru_add_bulk(k, s.list_lru, objs)
        else:
            out: list[int] = []
            for _ in range(n):
                s0 = k.steps
                idx = kmem_cache_alloc(k, s, gfp)
                self.alloc_steps += k.steps - s0
                self.alloc_samples += 1
                if idx < 0:
                    self.result.alloc_failures += 1
                    continue
                out.append(idx)
            objs = np.asarray(out, dtype=np.int64)
            if lru and s.list_lru is not None:
                for idx in out:
                    list_lru_add(k, s.list_lru, idx)
        if fate == "transient":
            self._free_body(k, s, objs)
            objs = EMPTY
        mem_cgroup_handle_over_high(k)
        return objs

    def _free_body(self, k: Kernel, s: KmemCache, objs: NDArray[np.int64]) -> None:
        if self.bulk:
            kmem_cache_free_bulk(k, s, objs)
        else:
            for idx in objs.tolist():
                kmem_cache_free(k, s, idx)

    # -- events -----------------------------------------------------------------------------
    def _start(self, o: _Owner) -> None:
        k = self.k
        if o.own_cgroup:
            # Only a cgroup with children enables memory for them: a cgroup with controllers
            # in its subtree_control cannot hold processes (the no-internal-process rule).
            k.mkdir(o.path, subtree_control="+memory" if o.children else "")
            self.result.cgroups_created += 1
            self._limits(o.path, o.max, o.high)
        o.alive = True

    def _alloc(self, o: _Owner, a: AllocSpec, n: int) -> None:
        k = self.k
        if not o.alive:
            return
        s = kmem_cache_by_name(k, a.cache)
        gfp = GFP_KERNEL | (Gfp.ACCOUNT if a.account else 0)
        per, extra = divmod(n, a.threads)
        # The scheduler spreads a cgroup's threads over the CPUs: each burst starts on the
        # next CPU in turn.
        first = self._next_worker
        self._next_worker += 1
        for t in range(a.threads):
            nt = per + (1 if t < extra else 0)
            if not nt:
                continue
            w = self._move((first + t) % len(self.workers), o.path)
            n0 = self.result.alloc_failures
            objs = k.call(self._alloc_body, s, gfp, nt, a.fate, task=w)
            self.result.objects_allocated += nt - (self.result.alloc_failures - n0)
            if not len(objs):
                continue
            if a.fate == "keep":
                self.kept.append((s, objs))
            elif a.fate == "exit":
                if a.keep_fraction > 0:
                    mask = self.np_rng.random(len(objs)) < a.keep_fraction
                    if mask.any():
                        self.kept.append((s, objs[mask]))
                    objs = objs[~mask]
                if len(objs):
                    o.held.append((s, objs))

    def _stop(self, o: _Owner) -> None:
        k = self.k
        if not o.alive:
            return
        for ch in o.children:
            self._stop(ch)
        for s, objs in o.held:
            k.call(self._free_body, s, objs, task=self._worker())
        o.held.clear()
        o.alive = False
        if o.own_cgroup:
            self._evacuate(o.path)
            k.rmdir(o.path)
            self.result.cgroups_removed += 1

    def _global(self, ev: Any) -> None:
        k = self.k
        if ev.drop_caches is not None:
            k.call(drop_caches, ev.drop_caches, name="drop_caches")
        if ev.rmdir is not None:
            self._evacuate(ev.rmdir)
            k.rmdir(ev.rmdir)
            self.result.cgroups_removed += 1

    def _sample(self, t_ns: int) -> None:
        self.result.dying_timeline.append((round(t_ns / NS, 3), self._dying()))

    def _dying(self) -> int:
        return int(self.k.cgroup.root.nr_dying_descendants)

    def _check(self) -> None:
        """Run every consistency checker now (drained stocks do not matter to them)."""
        from memcgsim.init.main import quiescent_checkers

        for check in quiescent_checkers(self.k):
            check(self.k)

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> RunResult:
        t0 = time.perf_counter()
        k = self.k
        r = self.result
        events = _Planner(self.spec, self.seed).plan()
        check_at = {int(len(events) * (i + 1) / (self.checks + 1)) for i in range(self.checks)}
        for i, ev in enumerate(events):
            if ev.t_ns > k.clock_ns:
                k.clock_ns = ev.t_ns
            if ev.kind == "mkdir_static":
                parents = self._static_parents
                k.mkdir(ev.data.path,
                        subtree_control="+memory" if ev.data.path in parents else "")
                r.cgroups_created += 1
                self._limits(ev.data.path, ev.data.max, ev.data.high)
            elif ev.kind == "start":
                self._start(ev.data)
            elif ev.kind == "alloc":
                self._alloc(*ev.data)
            elif ev.kind == "stop":
                self._stop(ev.data)
            elif ev.kind == "global":
                self._global(ev.data)
            k.run()
            if ev.kind == "sample":
                self._sample(ev.t_ns)
            r.dying_peak = max(r.dying_peak, self._dying())
            if i in check_at:
                self._check()
        k.clock_ns = max(k.clock_ns, int(self.spec.workload.duration_s * NS))
        k.settle()
        self._finish()
        r.wall_seconds = time.perf_counter() - t0
        return r

    def _finish(self) -> None:
        k = self.k
        r = self.result
        # Drain the per-cpu stocks, as memcg offline would, so that the end state does not
        # depend on which memcg a CPU happened to cache last.
        k.call(lambda k: drain_all_stock(k, k.memcg.root_mem_cgroup), name="drain")
        k.settle()
        self._check()
        r.dying_at_end = self._dying()
        r.dying_peak = max(r.dying_peak, r.dying_at_end)
        g = k.slab
        r.slab_pages_peak = g.pages_peak
        r.slab_pages_end = g.pages_now
        live = sum(s.nr_inuse * s.size for s in g.caches if not s.destroyed)
        r.objects_live_end = sum(s.nr_inuse for s in g.caches if not s.destroyed)
        r.slab_utilization = live / (g.pages_now * k.page_size) if g.pages_now else 0.0
        for s in g.caches:
            if s.is_root_cache and not s.destroyed:
                a = s.arena
                owned = (a.owner.reshape(a.nr_pages, s.objects) > 0).any(axis=1)
                r.ownership_vector_bytes += int(owned.sum()) * s.objects * 8
        dying = {id(m) for m in all_memcgs(k) if m.refcnt.flags & 2}
        r.pinned_bytes_at_end = k.design.pinned_bytes(k, dying)
        r.dying_caches_at_end = k.design.dying_caches(k)
        work = k.design.reparent_work
        r.reparent_offlines = len(work)
        if work:
            r.reparent_work_max = max(w.touched for w in work)
            r.reparent_steps_max = max(w.steps for w in work)
            r.reparent_locked_steps_max = max(w.locked_steps for w in work)
            r.reparent_ptrs_max = max(w.ptrs for w in work)
            r.reparent_objects_max = max(w.objects for w in work)
            r.reparent_caches_max = max(w.caches for w in work)
            r.reparent_work_mean = sum(w.touched for w in work) / len(work)
        r.alloc_steps_mean = self.alloc_steps / self.alloc_samples if self.alloc_samples else 0.0
        r.violations = [f"{v.kind}: {v.message}" for v in k.violations]
        r.conservation_ok = not any(v.kind is ViolationKind.ACCOUNTING for v in k.violations)
        r.reclaimed_objects = k.vmscan.nr_reclaimed_objects
        r.memcg_reclaims = k.vmscan.nr_memcg_reclaims
        r.sim_seconds = k.clock_ns / NS


def run_workload(spec: WorkloadSpec, design: str, *, size: str = "default",
                 seed: int | None = None, bulk: bool = True) -> RunResult:
    """Run ``spec`` (already at ``size``) on ``design``; see :class:`Runner`."""
    return Runner(spec, design, size=size, seed=seed, bulk=bulk).run()
