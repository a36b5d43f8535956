"""memcgsim run / compare: the JSON the issue specifies, the table, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memcgsim.cli import main

KEYS = {"dying_at_end", "dying_peak", "slab_pages_peak", "slab_pages_end", "slab_utilization",
        "pinned_bytes_at_end", "reparent_work_max", "alloc_steps_mean", "conservation_ok",
        "sim_seconds", "wall_seconds"}


def _main(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as e:
        main(argv)
    code = e.value.code
    return int(code) if isinstance(code, int) else 1


def test_compare_json_has_every_design_and_metric(capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["compare", "kselftest-dead-cgroups", "--size", "small", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["workload"], data["size"], data["seed"]) == ("kselftest-dead-cgroups",
                                                              "small", 0)
    assert list(data["designs"]) == ["page-pinning", "cache-reparent", "walk", "memcg-ptr",
                                     "objcg"]
    for d in data["designs"].values():
        assert set(d) >= KEYS
        assert isinstance(d["conservation_ok"], bool)
        assert 0.0 <= d["slab_utilization"] <= 1.0
    assert data["designs"]["page-pinning"]["dying_at_end"] == 10
    assert data["designs"]["memcg-ptr"]["dying_at_end"] == 0


def test_compare_some_designs_writes_a_results_file(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    assert _main(["compare", "kselftest-memcg-deletion", "--size", "small", "--designs",
                  "objcg,walk", "--seed", "3", "--output", str(out)]) == 0
    table = capsys.readouterr().out
    assert "objcg" in table and "walk" in table and "dying cgroups at end" in table
    data = json.loads(out.read_text())
    assert list(data["designs"]) == ["objcg", "walk"] and data["seed"] == 3
    assert not list(tmp_path.glob(".r.json.*"))  # no temporary file left behind


def test_run_prints_one_designs_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["run", "kselftest-dead-cgroups", "--design", "page-pinning", "--size",
                  "small", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["design"] == "page-pinning" and set(data) >= KEYS
    assert data["dying_at_end"] == 10


def test_run_a_scenario_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "s.toml"
    p.write_text('[workload]\nname = "f"\nduration_s = 10\n\n[[service]]\nname = "a"\n'
                 'count = 3\nlifetime = { mean_s = 1 }\nalloc = [{ cache = "dentry", '
                 'count = 5, fate = "lru" }]\n')
    assert _main(["run", str(p), "--design", "objcg", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["workload"] == "f" and data["conservation_ok"] is True


@pytest.mark.parametrize(("argv", "expect"), [
    (["run", "nope"], "no such built-in workload or scenario file"),
    (["run", "systemd-churn", "--design", "slab"], "--design: unknown design 'slab'"),
    (["compare", "systemd-churn", "--designs", "objcg,,x"], "unknown design 'x'"),
    (["compare", "systemd-churn", "--size", "huge"], "unknown size 'huge'"),
    (["run", "missing.toml"], "missing.toml: cannot read it"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], expect: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(argv) == 2
    err = capsys.readouterr().err
    assert expect in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_scenario_file_names_file_and_key(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('[workload]\nname = "b"\nduration_s = 5\n\n[[service]]\nname = "a"\n'
                 'count = 1\nlifetime = { mean_s = 1 }\nalloc = [{ cache = "nope", count = 1 }]\n')
    assert _main(["compare", str(p)]) == 2
    err = capsys.readouterr().err
    assert f"{p}: service[0].alloc[0].cache: unknown cache 'nope'" in err
