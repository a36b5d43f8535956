"""Completion in the interactive shell: commands, paths, processes, caches, labels."""

from __future__ import annotations

import io
import sys

import pytest

from memcgsim.shell import Shell
from memcgsim.shell.repl import Completer, interact
from tests.shell.conftest import run_script


def _completer(script: str) -> Completer:
    run = run_script(script)
    return Completer(Shell(run.us, io.StringIO(), io.StringIO()))


def test_the_first_word_completes_to_commands() -> None:
    c = _completer("")
    assert c.candidates("sp", "sp") == ["spawn "]
    assert c.candidates("s", "s") == ["settle ", "sleep ", "spawn ", "stat-missing "]


def test_paths_complete_cgroups_and_files() -> None:
    c = _completer("mkdir alpha\nmkdir alpha/beta")
    assert c.candidates("cat al", "al") == ["alpha/"]
    assert "alpha/beta/" in c.candidates("cat alpha/", "alpha/")
    assert "alpha/memory.stat " in c.candidates("cat alpha/memory.s", "alpha/memory.s")
    assert c.candidates("cd /sys/f", "/sys/f") == ["/sys/fs/"]
    assert c.candidates("cat nowhere/x", "nowhere/x") == []


def test_arguments_complete_processes_caches_and_labels() -> None:
    c = _completer("spawn worker\nspawn other\nalloc worker kmalloc-64 1 as objs")
    assert c.candidates("alloc w", "w") == ["worker "]
    assert c.candidates("alloc worker kmalloc-1", "kmalloc-1") == [
        "kmalloc-128 ", "kmalloc-16 ", "kmalloc-192 ", "kmalloc-1k "]
    assert c.candidates("free o", "o") == ["objs "]
    assert c.candidates("kill worker o", "o") == ["other "]


def test_interact_runs_lines_until_end_of_input(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    lines = iter(["mkdir a", "cat a/cgroup.events", "rmdir nope"])
    prompts: list[str] = []

    def fake_input(prompt: str) -> str:
        prompts.append(prompt)
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    run = run_script("")
    status = interact(Shell(run.us, sys.stdout, sys.stderr))
    out, err = capsys.readouterr()
    assert status == 1
    assert out == "populated 0\nfrozen 0\n"
    assert "rmdir: 'nope': No such file or directory" in err
    assert prompts[0] == "/sys/fs/cgroup # "


def test_interact_ends_at_exit_with_its_status(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = iter(["cd /sys", "exit 4", "mkdir never"])
    prompts: list[str] = []

    def fake_input(prompt: str) -> str:
        prompts.append(prompt)
        return next(lines)

    monkeypatch.setattr("builtins.input", fake_input)
    run = run_script("")
    assert interact(Shell(run.us, io.StringIO(), io.StringIO())) == 4
    assert prompts == ["/sys/fs/cgroup # ", "/sys # "]
