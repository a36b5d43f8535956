"""Completion in the interactive shell: commands, paths, processes, caches, labels."""

from __future__ import annotations

import io

from memcgsim.shell import Shell
from memcgsim.shell.repl import Completer
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
