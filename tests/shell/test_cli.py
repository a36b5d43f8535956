"""``memcgsim shell``: files, standard input, options, and what goes wrong, without tracebacks."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from memcgsim.cli import main
from memcgsim.kernel.violations import ViolationKind
from memcgsim.shell import EXIT_PANIC, Shell
from tests.shell.conftest import EXAMPLES, run_script


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ei:
        main(argv)
    out, err = capsys.readouterr()
    code = ei.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_shell_runs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _main(["shell", str(EXAMPLES / "seed-scenario.sh")], capsys)
    assert code == 0, err
    assert out.splitlines()[3] == "nr_dying_descendants 0"


def test_shell_runs_standard_input(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("mkdir a\ncat a/cgroup.events\nrmdir zz\n"))
    code, out, err = _main(["shell", "--cpus", "4", "--seed", "3"], capsys)
    assert code == 1
    assert out == "populated 0\nfrozen 0\n"
    assert err == "rmdir: 'zz': No such file or directory\n"


def test_shell_strict_stops_at_the_first_failure(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "s.sh"
    script.write_text("rmdir zz\necho reached\n")
    code, out, _ = _main(["shell", "--strict", str(script)], capsys)
    assert code == 1 and out == ""
    code, out, _ = _main(["shell", str(script)], capsys)
    assert code == 1 and out == "reached\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["shell", "--design", "nope"], "unknown design 'nope'"),
    (["shell", "/nonexistent/script.sh"], "No such file or directory"),
    (["shell", "--cpus", "0"], "--cpus"),
    (["shell", "--seed", "x"], "--seed"),
])
def test_bad_usage_is_one_line_and_exit_2(argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _main(argv, capsys)
    assert out == ""
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_a_kernel_panic_ends_the_script_with_one_line() -> None:
    run = run_script("")
    us = run.us
    us.k.quiescent_checks.append(lambda k: k.report(ViolationKind.ACCOUNTING, "boom"))
    out, err = io.StringIO(), io.StringIO()
    status = Shell(us, out, err).run_lines(["settle", "echo not reached"])
    assert status == EXIT_PANIC
    assert out.getvalue() == ""
    assert err.getvalue().startswith("memcgsim: kernel panic: ")
    assert "boom" in err.getvalue() and len(err.getvalue().splitlines()) == 1


def test_a_bug_in_the_model_is_reported_in_one_line() -> None:
    run = run_script("")

    def broken() -> None:
        raise AssertionError("invariant")

    run.us.settle = broken  # type: ignore[method-assign]
    err = io.StringIO()
    status = Shell(run.us, io.StringIO(), err).run_lines(["settle"])
    assert status == 70
    assert err.getvalue().startswith("memcgsim: internal error: AssertionError: invariant at ")
    assert len(err.getvalue().splitlines()) == 1
