"""The scenario format: a TOML file describing cgroups, the services that come and go in
them, what they allocate, and global events; validated with pydantic.

A scenario (every key documented in ``docs/workloads.md``)::

    [workload]
    name = "web-host"
    description = "web servers restarted every hour"
    cpus = 2
    duration_s = 86400
    sample_s = 600

    [[cgroup]]                      # created at time 0 (parents before children)
    path = "/system.slice"
    max = "2G"

    [[service]]                     # instances started over the run, each in its own cgroup
    name = "web"
    parent = "/system.slice"
    count = 24
    arrival = "uniform"             # or "poisson", "sequential"
    lifetime = { dist = "fixed", mean_s = 3600 }

    [[service.alloc]]               # what each instance allocates when it starts
    cache = "dentry"
    count = 2000
    fate = "lru"                    # cached after use: outlives the instance until reclaimed

    [[event]]
    at_s = 43200
    drop_caches = 2

Errors are reported as one line: the file, the key (``service[0].alloc[1].cache``) and what
was expected.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from memcgsim.mm.slab_common import CACHE_SPECS

__all__ = [
    "SIZES",
    "AllocSpec",
    "CgroupSpec",
    "ChildSpec",
    "EventSpec",
    "LifetimeSpec",
    "ScenarioError",
    "ServiceSpec",
    "WorkloadSpec",
    "load_scenario",
    "parse_mem_size",
    "scenario_from_dict",
]

#: the sizes every scenario can be run at
SIZES = ("small", "default", "large")

_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class ScenarioError(ValueError):
    """A scenario that cannot be run: ``where`` (file), ``key`` and the problem."""

    def __init__(self, where: str, key: str, problem: str) -> None:
        self.where = where
        self.key = key
        self.problem = problem
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


def parse_mem_size(v: Any) -> int | None:
    """memparse(): ``4096``, ``"64M"``, ``"1G"``, ``"max"`` (None) -> bytes."""
    if v is None or v == "max":
        return None
    if isinstance(v, bool):
        raise ValueError("expected a byte count such as 4096, \"64M\" or \"max\"")
    if isinstance(v, int):
        if v < 0:
            raise ValueError(f"expected a non-negative byte count, not {v}")
        return v
    if isinstance(v, str):
        m = re.fullmatch(r"\s*(\d+)\s*([kKmMgGtT]?)\s*", v)
        if m:
            return int(m.group(1)) * _SUFFIX[m.group(2).lower()]
    raise ValueError(f"expected a byte count such as 4096, \"64M\" or \"max\", not {v!r}")


MemSize = Annotated[int | None, BeforeValidator(parse_mem_size)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LifetimeSpec(_Model):
    """How long an instance (or a child generation) lives, in simulated seconds."""

    #: fixed, exponential, lognormal (sigma) or pareto (alpha, heavy-tailed)
    dist: Literal["fixed", "exponential", "lognormal", "pareto"] = "fixed"
    mean_s: float = Field(gt=0)
    sigma: float = Field(1.0, gt=0)
    alpha: float = Field(1.5, gt=1)
    #: lifetimes are cut at this many seconds
    max_s: float | None = Field(None, gt=0)


class AllocSpec(_Model):
    """Objects an instance allocates: ``count`` from ``cache`` in ``bursts`` spread over its
    life, by ``threads`` tasks on different CPUs."""

    cache: str
    count: int = Field(ge=0)
    #: lru: left unused on the cache's LRU (reclaimable, outlives the cgroup);
    #: exit: freed when the instance stops; keep: never freed (outlives everything);
    #: transient: freed by the same task right after the burst (short-lived buffers)
    fate: Literal["lru", "exit", "keep", "transient"] = "exit"
    #: of "exit" objects, the fraction still referenced elsewhere when the instance stops
    keep_fraction: float = Field(0.0, ge=0, le=1)
    bursts: int = Field(1, ge=1)
    threads: int = Field(1, ge=1)
    #: allocated with __GFP_ACCOUNT (caches with SLAB_ACCOUNT are accounted regardless)
    account: bool = True


class ChildSpec(_Model):
    """A nested cgroup inside every instance (a container in a pod), run as ``count``
    generations one after another: each generation is a new cgroup ``name-<gen>``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.:@-]+$")
    count: int = Field(1, ge=1)
    lifetime: LifetimeSpec | None = None
    max: MemSize = None
    high: MemSize = None
    alloc: list[AllocSpec] = []


class ServiceSpec(_Model):
    """A kind of job: ``count`` instances over the run, each in a new cgroup under
    ``parent`` (which must be the root or a declared [[cgroup]])."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.:@-]+$")
    parent: str = "/"
    count: int = Field(ge=0)
    arrival: Literal["uniform", "poisson", "sequential"] = "uniform"
    lifetime: LifetimeSpec
    #: False: the instance runs in ``parent`` itself instead of a cgroup of its own
    own_cgroup: bool = True
    max: MemSize = None
    high: MemSize = None
    children: list[ChildSpec] = []
    alloc: list[AllocSpec] = []


class CgroupSpec(_Model):
    """A cgroup that exists from the start (``+memory`` in its subtree_control)."""

    path: str = Field(pattern=r"^(/[A-Za-z0-9_.:@-]+)+$")
    max: MemSize = None
    high: MemSize = None


class EventSpec(_Model):
    """Something that happens at ``at_s``: a drop_caches write, or removing a cgroup."""

    at_s: float = Field(ge=0)
    drop_caches: int | None = Field(None, ge=1, le=3)
    rmdir: str | None = None


class WorkloadHeader(_Model):
    name: str
    description: str = ""
    cpus: int = Field(2, ge=1, le=64)
    seed: int = Field(0, ge=0)
    duration_s: float = Field(gt=0)
    sample_s: float = Field(60.0, gt=0)


class WorkloadSpec(_Model):
    """A whole scenario."""

    workload: WorkloadHeader
    cgroup: list[CgroupSpec] = []
    service: list[ServiceSpec] = []
    event: list[EventSpec] = []
    #: size name -> factor applied to every service's instance count
    sizes: dict[str, float] = {"small": 0.1, "default": 1.0, "large": 10.0}

    def scaled(self, size: str) -> WorkloadSpec:
        """This scenario at ``size`` (instance counts scaled, at least one each)."""
        f = self.sizes.get(size)
        if f is None:
            raise ScenarioError(self.workload.name, "sizes",
                                f"no size {size!r} (sizes: {', '.join(self.sizes)})")
        if f == 1.0:
            return self
        svcs = [s.model_copy(update={"count": max(1, round(s.count * f)) if s.count else 0})
                for s in self.service]
        return self.model_copy(update={"service": svcs})


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _check(spec: WorkloadSpec, where: str) -> None:
    """What pydantic cannot see: cache names, cgroup paths that exist when used."""
    declared = {"/"}
    for i, cg in enumerate(spec.cgroup):
        parent = cg.path.rsplit("/", 1)[0] or "/"
        if parent not in declared:
            raise ScenarioError(where, f"cgroup[{i}].path",
                                f"parent {parent!r} of {cg.path!r} does not exist when it is "
                                "created (declare parents first)")
        if cg.path in declared:
            raise ScenarioError(where, f"cgroup[{i}].path", f"{cg.path!r} is declared twice")
        declared.add(cg.path)
    names: set[str] = set()
    for i, svc in enumerate(spec.service):
        if svc.parent not in declared:
            raise ScenarioError(where, f"service[{i}].parent",
                                f"cgroup {svc.parent!r} does not exist (declare it in "
                                "[[cgroup]])")
        if svc.name in names:
            raise ScenarioError(where, f"service[{i}].name", f"{svc.name!r} is used twice")
        names.add(svc.name)
        if not svc.own_cgroup and svc.children:
            raise ScenarioError(where, f"service[{i}].children",
                                "an instance without its own cgroup cannot have children")
        if svc.children and svc.alloc:
            raise ScenarioError(where, f"service[{i}].alloc",
                                "an instance with children enables memory for them and so "
                                "cannot run processes itself (cgroup v2's no-internal-"
                                "process rule): allocate in a child")
        groups = [(f"service[{i}].alloc", svc.alloc)] + [
            (f"service[{i}].children[{j}].alloc", ch.alloc)
            for j, ch in enumerate(svc.children)]
        for key, allocs in groups:
            for j, a in enumerate(allocs):
                spec_c = CACHE_SPECS.get(a.cache)
                if spec_c is None:
                    raise ScenarioError(where, f"{key}[{j}].cache",
                                        f"unknown cache {a.cache!r} (known: "
                                        f"{', '.join(sorted(CACHE_SPECS))})")
                if a.fate == "lru" and not spec_c.lru:
                    raise ScenarioError(where, f"{key}[{j}].fate",
                                        f"cache {a.cache!r} has no LRU; fate \"lru\" needs "
                                        "a reclaimable cache (dentry, inode_cache, "
                                        "ext4_inode_cache)")
    for i, ev in enumerate(spec.event):
        if ev.drop_caches is None and ev.rmdir is None:
            raise ScenarioError(where, f"event[{i}]", "expected drop_caches or rmdir")
        if ev.rmdir is not None and ev.rmdir not in declared:
            raise ScenarioError(where, f"event[{i}].rmdir",
                                f"cgroup {ev.rmdir!r} does not exist")
        if ev.at_s > spec.workload.duration_s:
            raise ScenarioError(where, f"event[{i}].at_s",
                                f"{ev.at_s} is after the end of the run "
                                f"({spec.workload.duration_s} s)")
    for size, f in spec.sizes.items():
        if f <= 0:
            raise ScenarioError(where, f"sizes.{size}", f"expected a positive factor, not {f}")


def scenario_from_dict(data: dict[str, Any], where: str = "<scenario>") -> WorkloadSpec:
    """Validate a scenario given as a dict; ScenarioError on the first problem."""
    try:
        spec = WorkloadSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        key = _key(tuple(err["loc"]))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"] not in ("value_error",):
            msg = f"{msg} (got {err['input']!r})"
        raise ScenarioError(where, key, msg.removeprefix("Value error, ")) from None
    _check(spec, where)
    return spec


def load_scenario(path: str | Path) -> WorkloadSpec:
    """Read and validate a scenario file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ScenarioError(str(p), "", f"cannot read it: {e.strerror or e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(str(p), "", f"not valid TOML: {e}") from None
    return scenario_from_dict(data, str(p))
