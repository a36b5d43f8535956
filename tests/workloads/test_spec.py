"""The scenario format: a valid file runs; each kind of mistake is one clear error naming the
file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from memcgsim.workloads.builtin import BUILTINS, builtin_scenario
from memcgsim.workloads.engine import run_workload
from memcgsim.workloads.spec import SIZES, ScenarioError, load_scenario, parse_mem_size

GOOD = """
[workload]
name = "tiny"
duration_s = 100
sample_s = 10

[[cgroup]]
path = "/jobs"
max = "64M"

[[service]]
name = "job"
parent = "/jobs"
count = 20
arrival = "poisson"
lifetime = { dist = "exponential", mean_s = 5 }

[[service.alloc]]
cache = "dentry"
count = 50
fate = "lru"

[[service.alloc]]
cache = "kmalloc-64"
count = 10
fate = "exit"
keep_fraction = 0.1

[[event]]
at_s = 50
drop_caches = 2
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


def test_a_valid_scenario_loads_scales_and_runs(tmp_path: Path) -> None:
    spec = load_scenario(_write(tmp_path, GOOD))
    assert spec.workload.name == "tiny" and spec.cgroup[0].max == 64 << 20
    assert spec.scaled("small").service[0].count == 2
    assert spec.scaled("large").service[0].count == 200
    r = run_workload(spec.scaled("small"), "objcg", size="small")
    assert r.cgroups_created >= 2 and r.conservation_ok


@pytest.mark.parametrize(("change", "key", "problem"), [
    (("cache = \"dentry\"", "cache = \"dentries\""), "service[0].alloc[0].cache",
     "unknown cache 'dentries'"),
    (("count = 50", "count = -5"), "service[0].alloc[0].count",
     "greater than or equal to 0"),
    (("parent = \"/jobs\"", "parent = \"/nowhere\""), "service[0].parent",
     "cgroup '/nowhere' does not exist"),
    (("max = \"64M\"", "max = \"64Q\""), "cgroup[0].max", "expected a byte count"),
    (("duration_s = 100", "duration_s = -1"), "workload.duration_s", "greater than 0"),
    (("mean_s = 5", "mean_s = 5, shape = 2"), "service[0].lifetime.shape", "unknown key"),
    (("fate = \"exit\"", "fate = \"lru\""), "service[0].alloc[1].fate",
     "cache 'kmalloc-64' has no LRU"),
    (("drop_caches = 2", "drop_caches = 7"), "event[0].drop_caches", "less than or equal to 3"),
    (("at_s = 50", "at_s = 500"), "event[0].at_s", "after the end of the run"),
    (("name = \"tiny\"\n", ""), "workload.name", "required key is missing"),
])
def test_each_mistake_is_one_line_naming_file_key_and_problem(
        tmp_path: Path, change: tuple[str, str], key: str, problem: str) -> None:
    p = _write(tmp_path, GOOD.replace(*change, 1))
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}: {key}: "), msg
    assert problem in msg


def test_bad_toml_and_missing_file_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"s\.toml: not valid TOML"):
        load_scenario(_write(tmp_path, "[workload\nname="))
    with pytest.raises(ScenarioError, match="cannot read it"):
        load_scenario(tmp_path / "missing.toml")


def test_an_instance_with_children_cannot_allocate_itself(tmp_path: Path) -> None:
    text = GOOD.replace('lifetime = { dist = "exponential", mean_s = 5 }',
                        'lifetime = { dist = "exponential", mean_s = 5 }\n'
                        'children = [{ name = "c" }]')
    with pytest.raises(ScenarioError, match=r"service\[0\]\.alloc: .*no-internal-process"):
        load_scenario(_write(tmp_path, text))


def test_parse_mem_size_reads_memparse_suffixes() -> None:
    assert parse_mem_size("1k") == 1024 and parse_mem_size("2M") == 2 << 20
    assert parse_mem_size("1G") == 1 << 30 and parse_mem_size(4096) == 4096
    assert parse_mem_size("max") is None
    for bad in ("1.5M", "-1", "foo", -1, True):
        with pytest.raises(ValueError):
            parse_mem_size(bad)


@pytest.mark.parametrize("name", list(BUILTINS))
def test_every_builtin_has_every_size_and_grows_with_it(name: str) -> None:
    specs = {size: builtin_scenario(name, size) for size in SIZES}
    n = {s: sum(x.count for x in sp.service) for s, sp in specs.items()}
    assert n["small"] < n["default"] < n["large"]
    assert specs["default"].workload.description


def test_unknown_builtin_or_size_is_an_error() -> None:
    with pytest.raises(ScenarioError, match="unknown workload"):
        builtin_scenario("nope")
    with pytest.raises(ScenarioError, match="unknown size 'huge'"):
        builtin_scenario("systemd-churn", "huge")
