"""The built-in scenarios, each at sizes ``small`` (seconds: tests), ``default`` and ``large``.

- ``systemd-churn``: a host's services over a simulated day.  Short timer jobs start and stop
  in their own cgroups under /system.slice; each stats names that do not exist (negative
  dentries) and opens files (dentries and inodes), which stay cached on the LRU after the job
  is gone, and makes unreclaimable allocations (task and mm structs, kmalloc buffers) that
  it frees when it exits, except a few that something else still references.  A handful of
  long-running daemons do the same over hours.  Nothing limits memory, so nothing reclaims
  the cached objects: exactly the situation in which removed cgroups pile up as dying.
- ``container-host``: a Kubernetes-style node.  Pods arrive as a Poisson process under
  /kubepods with heavy-tailed (Pareto) lifetimes and a memory.max each; every pod has a pause
  container and application and sidecar containers that restart (new cgroups) during the
  pod's life.  Containers allocate dentries and ext4 inodes (cached), sockets, task structs
  and kmalloc buffers (freed at exit, a few outliving it); pods hitting memory.max reclaim
  their cached objects.
- ``kselftest-dead-cgroups``: the shape of tools/testing/selftests/cgroup/test_kmem.c's
  test_kmem_dead_cgroups: 30 children of one parent, created one after another, each running
  alloc_dcache(100) (100 negative dentries) and removed, then an 8 second wait for
  nr_dying_descendants to reach 0.
- ``kselftest-memcg-deletion``: test_kmem_memcg_deletion's shape: 100 children one after
  another, each running 2 * nr_cpus threads of alloc_dcache(100), then removed.

Sizes scale the number of instances (``small`` about a tenth, ``large`` ten times), keeping
what each instance does.
"""

from __future__ import annotations

from typing import Any

from memcgsim.workloads.spec import SIZES, ScenarioError, WorkloadSpec, scenario_from_dict

__all__ = ["BUILTINS", "builtin_description", "builtin_scenario"]

_SCALE = {"small": 0.1, "default": 1.0, "large": 10.0}


def _n(size: str, default: int, small: int | None = None) -> int:
    if size == "small" and small is not None:
        return small
    return max(1, round(default * _SCALE[size]))


def systemd_churn(size: str) -> dict[str, Any]:
    day = 86400.0
    return {
        "workload": {
            "name": "systemd-churn",
            "description": "services started and stopped over a simulated day",
            "cpus": 2, "duration_s": day, "sample_s": 1800.0,
        },
        "cgroup": [{"path": "/system.slice"}],
        "service": [
            {
                "name": "timer-job", "parent": "/system.slice",
                "count": _n(size, 720, 72), "arrival": "uniform",
                "lifetime": {"dist": "lognormal", "mean_s": 60.0, "sigma": 1.0},
                "alloc": [
                    {"cache": "dentry", "count": 150, "fate": "lru"},  # stat of missing names
                    {"cache": "dentry", "count": 40, "fate": "lru"},  # files it opened
                    {"cache": "ext4_inode_cache", "count": 40, "fate": "lru"},
                    {"cache": "task_struct", "count": 2, "fate": "exit"},
                    {"cache": "mm_struct", "count": 1, "fate": "exit"},
                    {"cache": "signal_cache", "count": 1, "fate": "exit"},
                    {"cache": "files_cache", "count": 1, "fate": "exit"},
                    {"cache": "kmalloc-64", "count": 120, "fate": "exit", "keep_fraction": 0.02},
                    {"cache": "kmalloc-512", "count": 24, "fate": "exit", "keep_fraction": 0.02},
                    {"cache": "kmalloc-2k", "count": 4, "fate": "exit"},
                ],
            },
            {
                "name": "daemon", "parent": "/system.slice",
                "count": _n(size, 24, 4), "arrival": "uniform",
                "lifetime": {"dist": "pareto", "mean_s": 6 * 3600.0, "alpha": 1.5,
                             "max_s": day},
                "alloc": [
                    {"cache": "dentry", "count": 2000, "fate": "lru", "bursts": 4},
                    {"cache": "ext4_inode_cache", "count": 300, "fate": "lru", "bursts": 2},
                    {"cache": "sock_inode_cache", "count": 16, "fate": "exit"},
                    {"cache": "TCP", "count": 16, "fate": "exit", "keep_fraction": 0.05},
                    {"cache": "task_struct", "count": 8, "fate": "exit", "threads": 2},
                    {"cache": "kmalloc-256", "count": 400, "fate": "exit",
                     "keep_fraction": 0.01, "bursts": 4},
                ],
            },
        ],
    }


def container_host(size: str) -> dict[str, Any]:
    day = 86400.0
    small_objs = [
        {"cache": "kmalloc-32", "count": 200, "fate": "exit", "keep_fraction": 0.02,
         "threads": 8},
        {"cache": "kmalloc-64", "count": 300, "fate": "exit", "keep_fraction": 0.02,
         "threads": 8},
        {"cache": "kmalloc-512", "count": 60, "fate": "exit", "keep_fraction": 0.02,
         "threads": 4},
        {"cache": "kmalloc-1k", "count": 40, "fate": "exit", "keep_fraction": 0.02,
         "threads": 4},
        {"cache": "kmalloc-16", "count": 120, "fate": "exit", "keep_fraction": 0.02,
         "threads": 8},
        {"cache": "kmalloc-96", "count": 80, "fate": "exit", "keep_fraction": 0.02,
         "threads": 4},
        {"cache": "kmalloc-192", "count": 60, "fate": "exit", "keep_fraction": 0.02,
         "threads": 4},
        {"cache": "kmalloc-2k", "count": 12, "fate": "exit", "keep_fraction": 0.02,
         "threads": 2},
    ]
    return {
        "workload": {
            "name": "container-host",
            "description": "pods with nested containers, heavy-tailed lifetimes, memory.max",
            "cpus": 8, "duration_s": day / 2, "sample_s": 1800.0,
        },
        "cgroup": [{"path": "/kubepods"}],
        "service": [
            {
                "name": "pod", "parent": "/kubepods",
                "count": _n(size, 240, 24), "arrival": "poisson",
                "lifetime": {"dist": "pareto", "mean_s": 3 * 3600.0, "alpha": 1.5,
                             "max_s": day},
                "max": "64M",
                "children": [
                    {
                        "name": "pause", "count": 1,
                        "alloc": [
                            {"cache": "task_struct", "count": 1, "fate": "exit"},
                            {"cache": "kmalloc-256", "count": 16, "fate": "exit"},
                        ],
                    },
                    {
                        "name": "app", "count": 6,
                        "lifetime": {"dist": "lognormal", "mean_s": 2400.0, "sigma": 1.0},
                        "alloc": [
                            {"cache": "dentry", "count": 900, "fate": "lru", "bursts": 3,
                             "threads": 4},
                            {"cache": "ext4_inode_cache", "count": 120, "fate": "lru",
                             "bursts": 3, "threads": 4},
                            {"cache": "sock_inode_cache", "count": 12, "fate": "exit",
                             "threads": 2},
                            {"cache": "TCP", "count": 12, "fate": "exit", "keep_fraction": 0.05,
                             "threads": 2},
                            {"cache": "task_struct", "count": 6, "fate": "exit", "threads": 2},
                            {"cache": "mm_struct", "count": 1, "fate": "exit"},
                            {"cache": "signal_cache", "count": 1, "fate": "exit"},
                            {"cache": "files_cache", "count": 1, "fate": "exit"},
                            # short-lived: request buffers and connections
                            {"cache": "kmalloc-4k", "count": 48, "fate": "transient",
                             "bursts": 3, "threads": 4},
                            {"cache": "kmalloc-512", "count": 120, "fate": "transient",
                             "bursts": 3, "threads": 4},
                            {"cache": "TCP", "count": 24, "fate": "transient", "bursts": 3,
                             "threads": 4},
                            *small_objs,
                        ],
                    },
                    {
                        "name": "sidecar", "count": 2,
                        "lifetime": {"dist": "exponential", "mean_s": 5400.0},
                        "alloc": [
                            {"cache": "dentry", "count": 400, "fate": "lru"},
                            {"cache": "kmalloc-128", "count": 150, "fate": "exit",
                             "keep_fraction": 0.02, "threads": 2},
                            {"cache": "kmalloc-256", "count": 40, "fate": "exit",
                             "keep_fraction": 0.02},
                            {"cache": "task_struct", "count": 2, "fate": "exit"},
                        ],
                    },
                ],
            },
            {
                # Batch jobs walk big trees under a tight memory.max: they reclaim their own
                # cached dentries and inodes as they go.
                "name": "batch", "parent": "/kubepods",
                "count": _n(size, 40, 4), "arrival": "uniform",
                "lifetime": {"dist": "exponential", "mean_s": 1800.0},
                "max": "2M",
                "children": [{
                    "name": "job", "count": 1,
                    "alloc": [
                        {"cache": "dentry", "count": 12000, "fate": "lru", "bursts": 6},
                        {"cache": "ext4_inode_cache", "count": 2000, "fate": "lru",
                         "bursts": 6},
                        {"cache": "task_struct", "count": 4, "fate": "exit", "threads": 4},
                        {"cache": "kmalloc-4k", "count": 16, "fate": "exit",
                         "keep_fraction": 0.05, "threads": 4},
                    ],
                }],
            },
        ],
    }


def kselftest_dead_cgroups(size: str) -> dict[str, Any]:
    n = {"small": 10, "default": 30, "large": 300}[size]
    life = 0.05
    return {
        "workload": {
            "name": "kselftest-dead-cgroups",
            "description": f"test_kmem_dead_cgroups: {n} children x alloc_dcache(100), then "
                           "an 8 s poll of nr_dying_descendants",
            "cpus": 2, "duration_s": n * life + 8.0, "sample_s": 0.1,
        },
        "cgroup": [{"path": "/kmem_dead_cgroups_test"}],
        "service": [{
            "name": "child", "parent": "/kmem_dead_cgroups_test", "count": n,
            "arrival": "sequential", "lifetime": {"dist": "fixed", "mean_s": life},
            "alloc": [{"cache": "dentry", "count": 100, "fate": "lru"}],
        }],
        "sizes": {"small": 1.0, "default": 1.0, "large": 1.0},
    }


def kselftest_memcg_deletion(size: str) -> dict[str, Any]:
    n = {"small": 10, "default": 100, "large": 1000}[size]
    cpus = 2
    life = 0.05
    return {
        "workload": {
            "name": "kselftest-memcg-deletion",
            "description": f"test_kmem_memcg_deletion: {n} children x 2*CPUs threads x "
                           "alloc_dcache(100)",
            "cpus": cpus, "duration_s": n * life + 1.0, "sample_s": 0.5,
        },
        "cgroup": [{"path": "/kmem_memcg_deletion_test"}],
        "service": [{
            "name": "child", "parent": "/kmem_memcg_deletion_test", "count": n,
            "arrival": "sequential", "lifetime": {"dist": "fixed", "mean_s": life},
            "alloc": [{"cache": "dentry", "count": 2 * cpus * 100, "fate": "lru",
                       "threads": 2 * cpus}],
        }],
        "sizes": {"small": 1.0, "default": 1.0, "large": 1.0},
    }


#: name -> (builder of the scenario dict at a size, one-line description)
BUILTINS = {
    "systemd-churn": systemd_churn,
    "container-host": container_host,
    "kselftest-dead-cgroups": kselftest_dead_cgroups,
    "kselftest-memcg-deletion": kselftest_memcg_deletion,
}


def builtin_scenario(name: str, size: str = "default") -> WorkloadSpec:
    """The built-in scenario ``name`` at ``size``."""
    if name not in BUILTINS:
        raise ScenarioError(name, "", f"unknown workload (built-ins: {', '.join(BUILTINS)}; "
                                      "or give a scenario .toml file)")
    if size not in SIZES:
        raise ScenarioError(name, "size", f"unknown size {size!r} (sizes: {', '.join(SIZES)})")
    return scenario_from_dict(BUILTINS[name](size), f"builtin:{name}")


def builtin_description(name: str) -> str:
    spec = BUILTINS[name]("small")
    return str(spec["workload"]["description"])
