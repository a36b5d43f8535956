"""Counterexamples: shrinking, per-CPU swimlanes, versioned JSON traces and replay.

A trace file records what replays one execution exactly: the scenario (a built-in name or the
scenario file), the mutant, and the list of choices; plus, for people, the violation and the
steps with the model function and line each one runs and the kernel function it stands for.
Traces are written atomically (a temporary file renamed over the target).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memcgsim.explore.runtime import Outcome, Policy, Scenario, execute
from memcgsim.explore.strategies import Config, explore_unit, plan_units, preemptions
from memcgsim.kernel.violations import Violation

__all__ = [
    "KERNEL_FUNCTIONS",
    "TRACE_FORMAT",
    "TRACE_VERSION",
    "Replay",
    "TraceError",
    "kernel_function",
    "load_trace",
    "render_swimlane",
    "replay_choices",
    "save_trace",
    "shrink",
    "shrink_schedule",
]

TRACE_FORMAT = "memcgsim-trace"
TRACE_VERSION = 1

#: model function -> (kernel file, kernel function) it stands for
KERNEL_FUNCTIONS: dict[str, tuple[str, str]] = {}


def _reg(path: str, *names: str, **renamed: str) -> None:
    for n in names:
        KERNEL_FUNCTIONS[n] = (path, n)
    for model_name, kname in renamed.items():
        KERNEL_FUNCTIONS[model_name] = (path, kname)


_reg("mm/memcontrol.c", "memcg_ptr_release", "memcg_init_kmem_memcg_ptr",
     "memcg_reparent_kmem_memcg_ptr", "memcg_offline_kmem", "memcg_online_kmem", "try_charge",
     "consume_subpage_stock", "refill_subpage_stock", "drain_subpage_stock",
     "__memcg_kmem_charge_subpage", "__memcg_kmem_uncharge_subpage", "mod_memcg_state",
     "__mod_memcg_state", "memcg_reparent_objcgs", "obj_cgroup_release",
     "get_mem_cgroup_from_objcg", "get_mem_cgroup_from_ptr", "mem_cgroup_css_offline",
     "_check_high", "consume_stock", "refill_stock", "drain_stock",
     _mutant_reparent="memcg_reparent_kmem_memcg_ptr", _mutant_release="memcg_ptr_release")
_reg("include/linux/memcontrol.h", "mem_cgroup_get_kmem_ptr", "mem_cgroup_ptr_tryget",
     "mem_cgroup_ptr_get", "mem_cgroup_ptr_put", "mem_cgroup_put", "parent_mem_cgroup",
     rcu_dereference_protected_ptr="rcu_dereference_protected")
_reg("mm/slab.h", "memcg_slab_post_alloc_hook", "memcg_slab_free_hook", "slab_pre_alloc_hook",
     memcg_free_last_object="memcg_slab_free_hook")
_reg("mm/page_counter.c", "page_counter_try_charge", "page_counter_charge",
     "page_counter_uncharge", "page_counter_cancel")
_reg("include/linux/cgroup.h", "css_get", "css_get_many", "css_put", "css_put_many",
     "css_tryget", "css_tryget_online")
_reg("lib/percpu-refcount.c", "percpu_ref_init", "percpu_ref_exit",
     "percpu_ref_kill_and_confirm", _switch_to_atomic_rcu="percpu_ref_switch_to_atomic_rcu",
     _switch_to_atomic="__percpu_ref_switch_to_atomic",
     _switch_mode="__percpu_ref_switch_mode")
_reg("include/linux/percpu-refcount.h", "percpu_ref_get_many", "percpu_ref_get",
     "percpu_ref_put_many", "percpu_ref_put", "percpu_ref_tryget", "percpu_ref_tryget_live",
     "percpu_ref_kill", _ref_is_percpu="__ref_is_percpu", _this_cpu_add="this_cpu_add",
     _this_cpu_add_fast="__ref_is_percpu+this_cpu_add", _atomic_add="atomic_long_add",
     _preempt_enable_fast="rcu_read_unlock_sched")
_reg("kernel/rcu/tree.c", "call_rcu", "synchronize_rcu", "rcu_gp_kthread",
     rcu_cpu_kthread="rcu_do_batch")
_reg("include/linux/rcupdate.h", "rcu_read_lock", "rcu_read_unlock", "rcu_dereference",
     "rcu_dereference_protected", "rcu_assign_pointer", "rcu_replace_pointer")
_reg("mm/slab_common.c", "kfree", "kmalloc", "kfree_rcu",
     _kfree_rcu_cb="kfree_rcu (callback)")
_reg("include/linux/list.h", "list_add", "list_del", "list_splice", "list_for_each_entry",
     "list_empty", "__list_add", "__list_del_entry", "__list_splice", "INIT_LIST_HEAD")
_reg("lib/list_debug.c", _list_del_entry_valid="__list_del_entry_valid",
     _list_add_valid="__list_add_valid")
_reg("kernel/locking/spinlock.c", "spin_lock", "spin_unlock", "spin_lock_irq",
     "spin_unlock_irq", "spin_lock_irqsave", "spin_unlock_irqrestore",
     _acquire="do_raw_spin_lock", _release="do_raw_spin_unlock")
_reg("kernel/cgroup/cgroup.c", "css_release", "css_killed_work_fn", "css_free_rwork_fn",
     memcg_offline="css_killed_work_fn",
     world_css_release="css_release", _world_css_free_rcu="css_free_rwork_fn")


def kernel_function(model_fn: str) -> str:
    """``file:function`` of the kernel code a model function stands for ('' if unknown)."""
    kf = KERNEL_FUNCTIONS.get(model_fn)
    return f"{kf[0]}:{kf[1]}" if kf else ""


class TraceError(ValueError):
    """A trace file that cannot be replayed (bad input: exit status 2)."""


@dataclass
class Step:
    """One row of a swimlane."""

    index: int
    task: str
    cpu: int | None
    #: what the step does: its declared footprint
    access: str
    #: model frames, innermost first: ``function:line``
    frames: list[str]

    @property
    def model(self) -> str:
        return self.frames[0] if self.frames else ""

    @property
    def kernel_chain(self) -> list[str]:
        """The kernel functions the step stands for, innermost first (known ones only)."""
        out: list[str] = []
        for fr in self.frames:
            k = kernel_function(fr.split(":", 1)[0])
            if k and k not in out:
                out.append(k)
        return out

    @property
    def kernel(self) -> str:
        """The innermost kernel function and the outermost one it runs in."""
        ch = self.kernel_chain
        if not ch:
            return ""
        return ch[0] if len(ch) == 1 else f"{ch[0]} in {ch[-1]}"

    def to_json(self) -> dict[str, Any]:
        return {"step": self.index, "task": self.task, "cpu": self.cpu, "access": self.access,
                "model": self.model, "frames": self.frames, "kernel": self.kernel}


@dataclass
class Replay:
    """An execution replayed with its steps recorded."""

    scenario: Scenario
    mutant: str | None
    choices: list[int]
    violation: Violation | None
    steps: list[Step] = field(default_factory=list)
    preemptions: int = 0
    nr_cpus: int = 2
    #: the choices offer rcu_gp at every step (DPOR's schedules), not only where its step
    #: does not commute with the previous one (Run.pick_task)
    gp_every_step: bool = False


class _EveryStep(Policy):
    """The first option, with rcu_gp offered at every step."""

    hold_gp = False


def _policy(gp_every_step: bool) -> Policy:
    return _EveryStep() if gp_every_step else Policy()


def replay_choices(sc: Scenario, choices: list[int], *, mutant: str | None = None,
                   gp_every_step: bool = False) -> Replay:
    """Re-execute ``choices`` recording every step's location (``gp_every_step``: a DPOR
    schedule, whose choices offer rcu_gp at every step)."""
    out = execute(sc, choices, _policy(gp_every_step), mutant=mutant, record=True,
                  locations=True, fingerprint=False)
    return _replay_from(sc, out, mutant, gp_every_step)


def _replay_from(sc: Scenario, out: Outcome, mutant: str | None,
                 gp_every_step: bool) -> Replay:
    steps: list[Step] = []
    for i, (tid, acc) in enumerate(out.steps):
        name, cpu = out.tasks.get(tid, (str(tid), None))
        loc = out.locations[i] if i < len(out.locations) else ""
        frames = [f.strip() for f in loc.split("<")] if loc else []
        if acc is None:
            what = "resumes after its wait"
        elif acc.obj == "" and acc.field == "start":
            what = "starts"
        else:
            what = f"{acc.kind.name.lower()} {acc.obj.split(':')[0]}:{acc.obj.split(':', 1)[-1]}" \
                   f"{acc.field}"
        steps.append(Step(i, name, cpu, what, frames))
    cps = _points(sc, out.choices, mutant, gp_every_step)
    return Replay(sc, mutant, list(out.choices), out.violation, steps,
                  preemptions(cps, out.choices), sc.nr_cpus, gp_every_step)


def _points(sc: Scenario, choices: list[int], mutant: str | None,
            gp_every_step: bool = False) -> list[Any]:
    """The choice points of a schedule: re-executed with an empty prefix and a policy that
    follows ``choices``, so that every choice point is recorded."""
    from memcgsim.explore.runtime import Run

    class _Follow(Policy):
        hold_gp = not gp_every_step

        def choose(self, run: Run, cp: Any) -> int:
            i = len(run.choices)
            return choices[i] if i < len(choices) and choices[i] in cp.options else cp.options[0]

    return execute(sc, (), _Follow(), mutant=mutant, fingerprint=False).new_points


def render_swimlane(rp: Replay, *, width: int = 46) -> str:
    """A column per CPU (and one for unbound kthreads), a row per step."""
    cols = [f"cpu{c}" for c in range(rp.nr_cpus)] + ["unbound"]
    lines = []
    head = f"{'step':>4} | " + " | ".join(c.ljust(width) for c in cols)
    lines.append(f"scenario {rp.scenario.name}" + (f", mutant {rp.mutant}" if rp.mutant else "")
                 + f": {len(rp.steps)} steps, {rp.preemptions} preemption(s)")
    lines.append(head)
    lines.append("-" * len(head))
    for s in rp.steps:
        col = s.cpu if s.cpu is not None else rp.nr_cpus
        ch = s.kernel_chain
        cells = [f"{s.task}: {s.model}", f"  {s.access}"]
        if ch:
            cells.append(f"  = {ch[0]}")
        if len(ch) > 1:
            cells.append(f"    in {ch[-1]}")
        for j, cell in enumerate(c[:width] for c in cells):
            if not cell:
                continue
            row = [""] * len(cols)
            row[col] = cell
            lines.append((f"{s.index:>4}" if j == 0 else "    ") + " | "
                         + " | ".join(x.ljust(width) for x in row).rstrip())
    if rp.violation is not None:
        lines.append("")
        lines.append(f"VIOLATION {rp.violation}")
    return "\n".join(lines)


def shrink(sc: Scenario, choices: list[int], violation: Violation, *,
           mutant: str | None = None, budget: int = 20_000) -> list[int]:
    """A schedule showing a violation of the same kind with the fewest preemptions:
    preemption-bounded search with bound 0, 1, ... up to the given schedule's count."""
    return shrink_schedule(sc, choices, violation, mutant=mutant, budget=budget)[0]


def shrink_schedule(sc: Scenario, choices: list[int], violation: Violation, *,
                    mutant: str | None = None, budget: int = 20_000,
                    gp_every_step: bool = False) -> tuple[list[int], bool]:
    """:func:`shrink` for a schedule of either kind (``gp_every_step``: DPOR's); returns the
    shrunk choices and their kind (bounded search's, unless none was found)."""
    cps = _points(sc, choices, mutant, gp_every_step)
    have = preemptions(cps, choices)
    for bound in range(have):
        cfg = Config(strategy="bounded", bound=bound, max_schedules=budget)
        used = 0
        for u in plan_units(sc, cfg, mutant):
            r = explore_unit(sc, cfg, mutant, u)
            used += r.schedules
            if r.violation is not None and r.violation.kind == violation.kind \
                    and r.choices is not None:
                return r.choices, False
            if used >= budget:
                break
    return choices, gp_every_step


# ---------------------------------------------------------------------- files
def save_trace(path: str | Path, rp: Replay, *, strategy: str = "") -> None:
    """Write the trace of ``rp`` to ``path`` atomically."""
    sc = rp.scenario
    doc = {
        "format": TRACE_FORMAT,
        "version": TRACE_VERSION,
        "scenario": sc.name,
        "source": sc.source,
        "mutant": rp.mutant,
        "strategy": strategy,
        "nr_cpus": rp.nr_cpus,
        "choices": rp.choices,
        "rcu_gp": "every-step" if rp.gp_every_step else "where-dependent",
        "preemptions": rp.preemptions,
        "violation": rp.violation.to_json() if rp.violation is not None else None,
        "steps": [s.to_json() for s in rp.steps],
    }
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=p.name + ".", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        os.replace(tmp, p)
    except BaseException:
        os.unlink(tmp)
        raise


@dataclass
class TraceFile:
    """A parsed trace file."""

    scenario: str
    source: str
    mutant: str | None
    choices: list[int]
    violation: dict[str, Any] | None
    #: the choices offer rcu_gp at every step (a DPOR schedule)
    gp_every_step: bool = False


def load_trace(path: str | Path) -> TraceFile:
    """Parse and validate a trace file; TraceError with one clear line otherwise."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise TraceError(f"cannot read trace {path}: {e.strerror or e}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise TraceError(f"{path} is not JSON: {e.msg} at line {e.lineno}") from None
    if not isinstance(doc, dict) or doc.get("format") != TRACE_FORMAT:
        raise TraceError(f"{path} is not a memcgsim trace (no \"format\": \"{TRACE_FORMAT}\")")
    if doc.get("version") != TRACE_VERSION:
        raise TraceError(f"{path}: trace version {doc.get('version')!r} is not supported "
                         f"(this memcgsim reads version {TRACE_VERSION})")
    choices = doc.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, int) and not isinstance(c, bool)
                                                for c in choices):
        raise TraceError(f"{path}: \"choices\" must be a list of integers")
    sc = doc.get("scenario")
    src = doc.get("source", "builtin")
    if not isinstance(sc, str) or not isinstance(src, str):
        raise TraceError(f"{path}: \"scenario\" and \"source\" must be strings")
    mutant = doc.get("mutant")
    if mutant is not None and not isinstance(mutant, str):
        raise TraceError(f"{path}: \"mutant\" must be a string or null")
    v = doc.get("violation")
    if v is not None and not isinstance(v, dict):
        raise TraceError(f"{path}: \"violation\" must be an object or null")
    gp = doc.get("rcu_gp", "where-dependent")
    if gp not in ("every-step", "where-dependent"):
        raise TraceError(f"{path}: \"rcu_gp\" must be \"every-step\" or \"where-dependent\"")
    return TraceFile(sc, src, mutant, choices, v, gp == "every-step")
