"""The ported test_kmem.c under every registered design, against recorded expectations.

EXPECTED holds, for each test and design, the outcome the model gives and why.  A design
registered without an entry fails here, so that each new design's outcomes get recorded.
"""

from __future__ import annotations

import pytest

from memcgsim import Kernel
from memcgsim.designs import DESIGNS
from memcgsim.selftests.cgroup.test_kmem import TESTS, main, run_test
from memcgsim.userspace import Userspace

_NO_DCACHE = ("skip", "stat(2) of missing names needs the dentry cache, which the slab model "
                      "does not have yet")
_NO_PERCPU = ("fail", "the model does not charge a new memcg's per-cpu data to its parent yet, "
                      "so the parent's memory.current and percpu stay 0")

EXPECTED: dict[str, dict[str, tuple[str, str]]] = {
    "test_kmem_basic": {"memcg-ptr": _NO_DCACHE, "objcg": _NO_DCACHE},
    "test_kmem_memcg_deletion": {"memcg-ptr": _NO_DCACHE, "objcg": _NO_DCACHE},
    "test_kmem_dead_cgroups": {"memcg-ptr": _NO_DCACHE, "objcg": _NO_DCACHE},
    "test_percpu_basic": {"memcg-ptr": _NO_PERCPU, "objcg": _NO_PERCPU},
}


@pytest.mark.parametrize("design", sorted(DESIGNS))
@pytest.mark.parametrize("test", list(TESTS))
def test_kmem_selftest_outcome_per_design(test: str, design: str) -> None:
    assert design in EXPECTED[test], f"record the expected outcome of {test} under {design}"
    outcome, why = EXPECTED[test][design]
    res = run_test(Userspace(Kernel(nr_cpus=2, seed=0, design=design)), test)
    assert res.outcome == outcome, f"{why}; output: {''.join(res.output)}{res.skip_reason}"


def test_main_prints_tap_as_kselftest_does() -> None:
    lines: list[str] = []
    status = main(lambda: Userspace(Kernel(nr_cpus=2, seed=0)),
                  ["test_kmem_dead_cgroups", "test_percpu_basic"], lines.append)
    assert lines[:2] == ["TAP version 13", "1..2"]
    outcomes = [line for line in lines if line.startswith(("ok ", "not ok "))]
    expect = {"pass": "ok {i} {name}", "fail": "not ok {i} {name}", "skip": "ok {i} # SKIP {name}"}
    for i, name in enumerate(["test_kmem_dead_cgroups", "test_percpu_basic"], 1):
        assert expect[EXPECTED[name]["memcg-ptr"][0]].format(i=i, name=name) in outcomes
    assert lines[-1].startswith("# Totals: pass:")
    failed = any(EXPECTED[n]["memcg-ptr"][0] == "fail"
                 for n in ["test_kmem_dead_cgroups", "test_percpu_basic"])
    assert status == (1 if failed else 0)


def test_kselftest_command_runs_the_port(capsys: pytest.CaptureFixture[str]) -> None:
    from memcgsim.cli import main as cli_main

    with pytest.raises(SystemExit) as ei:
        cli_main(["kselftest", "--design", "objcg", "test_kmem_dead_cgroups"])
    out = capsys.readouterr().out
    assert out.startswith("TAP version 13\n1..1\n")
    assert ei.value.code == (1 if EXPECTED["test_kmem_dead_cgroups"]["objcg"][0] == "fail" else 0)
