"""The concurrency explorer: built-ins pass on the seed, mutants are caught, counterexamples
replay, strategies agree, and parallel exploration counts what one process counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memcgsim.explore import (
    Config,
    CounterexampleFound,
    Scenario,
    TaskSpec,
    World,
    check,
    load_scenario,
    model,
)
from memcgsim.explore import runtime as rt
from memcgsim.explore.cli import run_check, run_replay
from memcgsim.explore.footprint import Footprint, dependent, depends
from memcgsim.explore.mutants import MUTANTS
from memcgsim.explore.scenarios import BUILTINS
from memcgsim.explore.trace import (
    load_trace,
    render_swimlane,
    replay_choices,
    save_trace,
    shrink,
)
from memcgsim.kernel.kernel import Kernel
from memcgsim.kernel.task import Access, AccessKind
from memcgsim.kernel.violations import ViolationKind

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lost_update.py"
FREE_HOOK = Path(__file__).resolve().parents[2] / "examples" / "free_hook_vs_offline.py"


# ---------------------------------------------------------------------- the seed passes
@pytest.mark.parametrize("name", list(BUILTINS))
def test_builtin_passes_on_seed_under_exhaustive_dpor(name: str) -> None:
    r = check(name, Config(strategy="dpor"))
    assert r.violation is None, r.violation
    assert r.complete and r.schedules > 1


@pytest.mark.parametrize("name", list(BUILTINS))
def test_builtin_passes_on_seed_under_preemption_bound_2(name: str) -> None:
    # The whole bound-2 space of every built-in is explored by .ci/run (memcgsim check all
    # --strategy bounded --bound 2); here its first schedules, which include all of bound 1.
    r = check(name, Config(strategy="bounded", bound=2, max_schedules=1500))
    assert r.violation is None, r.violation
    assert r.schedules >= 1500 or r.complete


# ---------------------------------------------------------------------- mutants are caught
#: the cheapest strategy that finds each mutant, and where
FINDS = {
    "no-css-get-in-reparent": ("reader-vs-offline", Config(strategy="dpor")),
    "kfree-not-kfree-rcu": ("obj-to-memcg-vs-offline", Config(strategy="dpor")),
    "get-not-tryget": ("reader-vs-offline", Config(strategy="dpor")),
    "css-get-not-tryget": ("obj-to-memcg-vs-offline", Config(strategy="dpor")),
    "xchg-loop-without-lock": ("release-vs-reparent", Config(strategy="dpor")),
    "list-del-outside-lock": ("release-vs-reparent", Config(strategy="dpor")),
    "put-memcg-before-list-del": ("release-vs-reparent", Config(strategy="dpor")),
}


def test_the_catalogue_has_the_issues_mutants() -> None:
    assert set(MUTANTS) == set(FINDS)


@pytest.mark.parametrize("mutant", list(FINDS))
def test_mutant_is_found(mutant: str) -> None:
    scenario, cfg = FINDS[mutant]
    r = check(scenario, cfg, mutant=mutant)
    assert r.violation is not None, f"{mutant} not found in {scenario} by {cfg.strategy}"
    assert r.schedules_to_find is not None and r.schedules_to_find >= 1


def test_mutant_kinds_are_the_expected_bugs() -> None:
    kinds = {}
    for mutant in ("kfree-not-kfree-rcu", "css-get-not-tryget", "put-memcg-before-list-del"):
        scenario, cfg = FINDS[mutant]
        r = check(scenario, cfg, mutant=mutant)
        assert r.violation is not None
        kinds[mutant] = r.violation.kind
    assert kinds == {
        "kfree-not-kfree-rcu": ViolationKind.USE_AFTER_FREE,
        "css-get-not-tryget": ViolationKind.REFCOUNT_GET_FROM_ZERO,
        "put-memcg-before-list-del": ViolationKind.REFCOUNT_UNDERFLOW,
    }


def test_finding_rfc_free_hook_gets_a_dying_memcg_from_zero() -> None:
    """A finding on the model's reconstruction of the series' free path (RFC 10/14 with
    01/14's byte stock): memcg_slab_free_hook() reads ptr->memcg under RCU and
    refill_subpage_stock() css_get()s it; an offline in between drops its last reference."""
    sc = load_scenario(str(FREE_HOOK))
    r = check(sc, Config(strategy="dpor"))
    assert r.violation is not None
    assert r.violation.kind is ViolationKind.REFCOUNT_GET_FROM_ZERO
    assert "refill_subpage_stock" in r.violation.location
    assert "memcg_slab_free_hook" in r.violation.location
    assert r.choices is not None
    small = replay_choices(sc, shrink(sc, r.choices, r.violation))
    assert small.preemptions == 1


# ---------------------------------------------------------------------- counterexamples
def test_replayed_trace_gives_the_same_violation(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rc = run_check("release-vs-reparent", mutant="put-memcg-before-list-del",
                   trace_dir=str(tmp_path), as_json=True)
    assert rc == 1
    doc = json.loads(capsys.readouterr().out)
    (v,) = doc["violations"]
    tf = load_trace(v["trace"])
    assert tf.violation is not None and tf.violation["kind"] == v["kind"]
    rc = run_replay(v["trace"], as_json=True)
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert out["same_as_recorded"] is True
    assert out["violation"]["kind"] == "refcount-underflow"
    assert out["violation"]["message"] == v["message"]


def test_shrunk_counterexample_has_no_more_preemptions_than_found() -> None:
    sc = load_scenario("release-vs-reparent")
    r = check(sc, Config(strategy="dpor"), mutant="list-del-outside-lock")
    assert r.violation is not None and r.choices is not None
    found = replay_choices(sc, r.choices, mutant="list-del-outside-lock")
    small = replay_choices(sc, shrink(sc, r.choices, r.violation,
                                      mutant="list-del-outside-lock"),
                           mutant="list-del-outside-lock")
    assert small.violation is not None and small.violation.kind == r.violation.kind
    assert small.preemptions <= found.preemptions


def test_swimlane_has_a_column_per_cpu_and_names_kernel_functions() -> None:
    sc = load_scenario("release-vs-reparent")
    r = check(sc, Config(strategy="dpor"), mutant="put-memcg-before-list-del")
    assert r.choices is not None
    text = render_swimlane(replay_choices(sc, r.choices, mutant="put-memcg-before-list-del"))
    header = next(line for line in text.splitlines() if line.startswith("step"))
    assert [c.strip() for c in header.split("|")] == ["step", "cpu0", "cpu1", "unbound"]
    assert "mm/memcontrol.c:memcg_ptr_release" in text
    assert "lib/percpu-refcount.c" in text or "include/linux/percpu-refcount.h" in text
    assert "VIOLATION refcount-underflow" in text


def test_bad_trace_is_one_line_and_exit_2(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "t.json"
    bad.write_text('{"format": "memcgsim-trace", "version": 99, "choices": []}')
    assert run_replay(str(bad)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "version 99" in err
    bad.write_text("not json")
    assert run_replay(str(bad)) == 2
    assert run_replay(str(tmp_path / "missing.json")) == 2


# ---------------------------------------------------------------------- strategies agree
def _counter_scenario(atomic: bool) -> Scenario:
    from memcgsim.kernel.objects import KObject

    class Counter(KObject):
        ktype = "struct counter"

        def __init__(self) -> None:
            super().__init__()
            self.value = 0

    def setup(k: Kernel) -> World:
        w = World.create(k)
        c = Counter()
        k.heap.adopt(c, "setup", static=True)
        w.extra["c"] = c
        return w

    def bump(k: Kernel, w: World) -> None:
        c = w.extra["c"]
        if atomic:
            k.rmw(c, "value", lambda v: v + 1)
            k.rmw(c, "value", lambda v: v + 1)
        else:
            v = k.load(c, "value")
            k.store(c, "value", v + 1)

    def final(k: Kernel, w: World) -> None:
        want = 4 if atomic else 2
        assert w.extra["c"].value == want, f"value {w.extra['c'].value}"

    return Scenario("counter-atomic" if atomic else "counter-racy", setup,
                    (TaskSpec("a", 0, bump), TaskSpec("b", 1, bump)), final)


@pytest.mark.parametrize("atomic", [True, False])
def test_dpor_and_dfs_agree_and_dpor_explores_fewer(atomic: bool) -> None:
    sc = _counter_scenario(atomic)
    dfs = check(sc, Config(strategy="dfs", stop_on_violation=False))
    dpor = check(sc, Config(strategy="dpor", stop_on_violation=False))
    assert dfs.complete and dpor.complete
    assert (dfs.violation is None) == (dpor.violation is None) == atomic
    assert dpor.schedules <= dfs.schedules
    assert dpor.end_states == dfs.end_states


def test_dpor_and_bounded_agree_on_every_mutant_dpor_finds() -> None:
    for mutant in ("put-memcg-before-list-del", "list-del-outside-lock"):
        a = check("release-vs-reparent", Config(strategy="dpor"), mutant=mutant)
        b = check("release-vs-reparent", Config(strategy="bounded", bound=1), mutant=mutant)
        assert a.violation is not None and b.violation is not None


def test_footprints_commute_only_on_different_locations() -> None:
    r = Footprint(Access("7:", "memcg", AccessKind.READ))
    w = Footprint(Access("7:", "memcg", AccessKind.RMW))
    other = Footprint(Access("7:", "list.next", AccessKind.WRITE))
    free = Footprint(Access("7:", "<slab>", AccessKind.WRITE))
    mode = Footprint(Access("7:refcnt.", "percpu_count_ptr", AccessKind.READ))
    flags = Footprint(Access("7:refcnt.", "flags", AccessKind.WRITE))
    assert not dependent(r, r) and dependent(r, w) and not dependent(w, other)
    assert dependent(free, r) and dependent(free, other)
    assert dependent(mode, flags)
    assert dependent(Footprint(None), r)


def test_grace_period_footprints() -> None:
    """A grace-period start is tried before a step that entered a read-side section, not
    after it; an end depends on the quiescent state it waited for; call_rcu depends on both;
    a ready callback's invocation and a CPU's nesting word on neither."""
    start = Footprint(Access("1:", "gp_start", AccessKind.WRITE), 0, True, "1")
    end = Footprint(Access("1:", "gp_end", AccessKind.WRITE), 0, True, "1")
    enter = Footprint(Access("9:", "count", AccessKind.RMW), rt.RCU_CHANGED | rt.RCU_ENTER, False,
                      "1")
    leave = Footprint(Access("9:", "count", AccessKind.RMW), rt.RCU_CHANGED, False, "1")
    qs = Footprint(Access("1:", "cpu0", AccessKind.WRITE), rt.RCU_CHANGED | rt.RCU_QS, False,
                   "1")
    call = Footprint(Access("1:", "cbs0", AccessKind.RMW), rt.RCU_CHANGED, False, "1")
    invoke = Footprint(Access("1:", "done0", AccessKind.RMW), 0, False, "1")
    assert depends(enter, start) and not depends(start, enter)
    assert not dependent(start, leave) and not dependent(end, enter)
    assert depends(qs, end) and not dependent(start, qs)
    assert dependent(start, call) and dependent(end, call)
    assert not dependent(start, invoke) and not dependent(end, invoke)
    assert not dependent(invoke, call)


class _FollowSteps(rt.Policy):
    """Run the given task at each step while it can run (rcu_gp offered at every step)."""

    hold_gp = False

    def __init__(self, seq: list[int]) -> None:
        self.seq = seq

    def choose(self, run: rt.Run, cp: rt.ChoicePoint) -> int:
        i = run.nr_steps
        want = self.seq[i] if i < len(self.seq) else None
        if want in cp.options:
            return want  # type: ignore[return-value]
        return cp.last if cp.last in cp.options else cp.options[0]  # type: ignore[return-value]


class _Random(rt.Policy):
    hold_gp = False

    def __init__(self, seed: int) -> None:
        import random

        self.rng = random.Random(seed)

    def choose(self, run: rt.Run, cp: rt.ChoicePoint) -> int:
        return cp.options[self.rng.randrange(len(cp.options))]


@pytest.mark.parametrize("mutant", [None, "get-not-tryget"])
def test_independent_steps_commute(mutant: str | None) -> None:
    """Swapping two adjacent steps the dependence relation calls independent leaves the
    verdict and the end state as they were (DPOR's soundness rests on it)."""
    sc = BUILTINS["reader-vs-offline"]
    swaps = 0
    for seed in range(6):
        base = rt.execute(sc, (), _Random(seed), mutant=mutant, record=True)
        seq = [t for t, _ in base.steps]
        gp = {t for t, (name, _) in base.tasks.items() if name == "rcu_gp"}
        fps = [Footprint(acc, base.rcu_flags[j], seq[j] in gp, base.rcu_alloc)
               for j, (_, acc) in enumerate(base.steps)]
        want = (None if base.violation is None else base.violation.kind, base.fingerprint)
        for i in range(len(seq) - 1):
            if seq[i] == seq[i + 1] or fps[i].wildcard or fps[i + 1].wildcard \
                    or dependent(fps[i], fps[i + 1]):
                continue
            swapped = [*seq[:i], seq[i + 1], seq[i], *seq[i + 2:]]
            out = rt.execute(sc, (), _FollowSteps(swapped), mutant=mutant, record=True)
            if [t for t, _ in out.steps] != swapped:
                continue  # the second step could not run first (its CPU was taken)
            swaps += 1
            got = (None if out.violation is None else out.violation.kind, out.fingerprint)
            assert got == want, f"seed {seed}: steps {i} and {i + 1} do not commute"
    assert swaps > 20


# ---------------------------------------------------------------------- parallel
@pytest.mark.parametrize(("name", "cfg"), [
    ("release-vs-reparent", Config(strategy="dpor")),
    ("objcg-get-memcg-vs-offline", Config(strategy="bounded", bound=1)),
    ("reader-vs-offline", Config(strategy="pct", runs=120, seed=7)),
])
def test_jobs_2_equals_jobs_1(name: str, cfg: Config) -> None:
    one = check(name, cfg, jobs=1)
    two = check(name, cfg, jobs=2)
    assert (one.schedules, one.blocked, one.end_states, one.complete) == \
        (two.schedules, two.blocked, two.end_states, two.complete)
    assert (one.violation is None) == (two.violation is None)


def test_jobs_2_stops_at_the_same_violation_as_jobs_1() -> None:
    cfg = Config(strategy="bounded", bound=1)
    one = check("release-vs-reparent", cfg, mutant="list-del-outside-lock", jobs=1)
    two = check("release-vs-reparent", cfg, mutant="list-del-outside-lock", jobs=2)
    assert one.violation is not None and two.violation is not None
    assert one.schedules_to_find == two.schedules_to_find
    assert one.choices == two.choices


# ---------------------------------------------------------------------- user scenarios
def test_user_scenario_file_with_a_deliberate_race_is_caught(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = run_check(str(EXAMPLE), strategy="dpor", trace_dir=str(tmp_path), as_json=True)
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert doc["scenario"] == "lost-update" and doc["strategy"] == "dpor"
    assert doc["violations"][0]["kind"] == "assertion"
    assert "lost update" in doc["violations"][0]["message"]
    assert {"schedules", "seconds", "violations"} <= set(doc)


def test_trace_of_a_scenario_file_replays_from_the_file(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_check(str(EXAMPLE), trace_dir=str(tmp_path), as_json=True) == 1
    trace = json.loads(capsys.readouterr().out)["violations"][0]["trace"]
    assert load_trace(trace).source == str(EXAMPLE)
    assert run_replay(trace, as_json=True) == 1
    assert json.loads(capsys.readouterr().out)["same_as_recorded"] is True


def test_bad_scenario_files_are_one_line_and_exit_2(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    broken = tmp_path / "broken.py"
    broken.write_text("import nonexistent_module_xyz\n")
    assert run_check(str(empty)) == 2
    assert run_check(str(broken)) == 2
    assert run_check(str(tmp_path / "missing.py")) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3
    assert "defines no Scenario" in err[0] and "ModuleNotFoundError" in err[1]
    assert "does not exist" in err[2]


def test_model_raises_with_the_counterexample_from_pytest() -> None:
    with pytest.raises(CounterexampleFound) as ei:
        model(_counter_scenario(atomic=False), Config(strategy="dpor"))
    assert "cpu0" in str(ei.value) and "VIOLATION assertion" in str(ei.value)
    assert model(_counter_scenario(atomic=True), Config(strategy="dfs")).violation is None


# ---------------------------------------------------------------------- command line
def test_check_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_check("objcg-get-memcg-vs-offline", strategy="dpor",
                     trace_dir=str(tmp_path)) == 0
    assert run_check("nope") == 2
    assert run_check("all", strategy="sideways") == 2
    assert run_check("all", mutant="nope") == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(e.startswith("memcgsim check: error:") for e in err)


def test_mutant_all_json_reports_each_mutant(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    rc = run_check("release-vs-reparent", strategy="dpor", mutant="all",
                   trace_dir=str(tmp_path), as_json=True)
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert set(doc["mutants"]) == set(MUTANTS)
    row = doc["mutants"]["put-memcg-before-list-del"]
    assert row["found"] is True and row["strategy"] == "dpor"
    assert isinstance(row["schedules_to_find"], int)
    # The RCU-reader mutants need a reader: release-vs-reparent has none.
    assert doc["mutants"]["kfree-not-kfree-rcu"]["found"] is False
    assert all(Path(v["trace"]).is_file() for v in doc["violations"])


def test_random_and_pct_are_deterministic_per_seed() -> None:
    for strat in ("random", "pct"):
        a = check("reader-vs-offline", Config(strategy=strat, runs=60, seed=3))
        b = check("reader-vs-offline", Config(strategy=strat, runs=60, seed=3))
        assert (a.schedules, a.end_states) == (b.schedules, b.end_states)


def test_random_walk_fast_pick_draws_as_choose() -> None:
    """The random walk's index pick (no ChoicePoint) takes the same choices as choose()."""
    import random

    from memcgsim.explore.strategies import _RandomPolicy

    class Slow(_RandomPolicy):
        def __init__(self, rng: random.Random) -> None:
            super().__init__(rng)
            self.pick_index = None

    sc = BUILTINS["release-vs-reparent"]
    seen = set()
    for seed in range(20):
        fast = rt.execute(sc, (), _RandomPolicy(random.Random(seed)))
        slow = rt.execute(sc, (), Slow(random.Random(seed)))
        assert fast.choices == slow.choices and fast.fingerprint == slow.fingerprint
        assert not fast.new_points and slow.new_points
        seen.add(tuple(fast.choices))
    # The seeds take different schedules, so equal choices are not equal by accident.
    assert len(seen) > 10


def test_dpor_schedule_replays_with_rcu_gp_at_every_step(tmp_path: Path) -> None:
    """DPOR's choices offer rcu_gp at every step: they replay so, and a trace says so."""
    sc = BUILTINS["reader-vs-offline"]
    r = check(sc, Config(strategy="dpor"), mutant="get-not-tryget")
    assert r.violation is not None and r.choices is not None
    rp = replay_choices(sc, r.choices, mutant="get-not-tryget", gp_every_step=True)
    assert rp.violation is not None and rp.violation.kind == r.violation.kind
    path = tmp_path / "t.json"
    save_trace(path, rp, strategy="dpor")
    tf = load_trace(path)
    assert tf.gp_every_step and tf.choices == r.choices
    assert run_replay(str(path)) == 1
