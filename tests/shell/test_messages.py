"""Failing commands print what busybox prints, the script's status says whether anything
failed, and no input makes the shell raise."""

from __future__ import annotations

import io

import pytest

from memcgsim.shell import Shell
from tests.shell.conftest import run_script


@pytest.mark.parametrize(("script", "message"), [
    ("mkdir a\nmkdir a", "mkdir: can't create directory 'a': File exists"),
    ("mkdir /sys/fs/cgroup/fa\nmkdir /sys/fs/cgroup/fa",
     "mkdir: can't create directory '/sys/fs/cgroup/fa': File exists"),
    ("mkdir x/y", "mkdir: can't create directory 'x/y': No such file or directory"),
    ("mkdir cgroup.procs/x", "mkdir: can't create directory 'cgroup.procs/x': Not a directory"),
    ("rmdir nonexistent", "rmdir: 'nonexistent': No such file or directory"),
    ("rmdir /sys/fs/cgroup/nonexistent",
     "rmdir: '/sys/fs/cgroup/nonexistent': No such file or directory"),
    ("mkdir fa\nmkdir fa/fb\nrmdir /sys/fs/cgroup/fa",
     "rmdir: '/sys/fs/cgroup/fa': Device or resource busy"),
    ("mkdir a\nspawn p a\nrmdir a", "rmdir: 'a': Device or resource busy"),
    ("rmdir cgroup.stat", "rmdir: 'cgroup.stat': Not a directory"),
    ("cat nope", "cat: can't open 'nope': No such file or directory"),
    ("mkdir a\ncat a", "cat: read error: Is a directory"),
    ("mkdir a\ncat a/cgroup.kill", "cat: read error: Invalid argument"),
    ("mkdir a\necho 1 > a/memory.current", "sh: write error: Invalid argument"),
    ("mkdir a\necho foo > a/memory.max", "sh: write error: Invalid argument"),
    ("mkdir a\necho +nonexistent > a/cgroup.subtree_control", "sh: write error: Invalid argument"),
    ("mkdir a\necho +memory > a/cgroup.subtree_control\nspawn p\necho $p > a/cgroup.procs",
     "sh: write error: Device or resource busy"),
    ("echo 99999 > cgroup.procs", "sh: write error: No such process"),
    ("echo 1 > nope", "sh: can't create nope: Permission denied"),
    ("echo 1 > x/nope", "sh: can't create x/nope: nonexistent directory"),
    ("mkdir a\necho 1 > a", "sh: can't create a: Is a directory"),
    ("frobnicate a", "sh: frobnicate: not found"),
    ("echo 'unterminated", "sh: syntax error: unterminated quoted string"),
    ("cat a | wc", "sh: syntax error: unexpected \"|\""),
    ("echo 1 >", "sh: syntax error: unexpected newline"),
    ("cd nowhere", "sh: cd: can't cd to nowhere: No such file or directory"),
    ("kill 99999", "kill: can't kill pid 99999: No such process"),
    ("kill ghost", "kill: bad pid 'ghost'"),
    ("sleep soon", "sleep: invalid number 'soon'"),
    ("sleep -1", "sleep: invalid number '-1'"),
    ("drop_caches 9", "sh: write error: Invalid argument"),
    ("echo x > /proc/sys/vm/drop_caches", "sh: write error: Invalid argument"),
    ("alloc", "alloc: usage: alloc TASK CACHE COUNT [as LABEL]"),
    ("alloc ghost kmalloc-64 1", "alloc: no such process: ghost"),
    ("spawn p\nalloc p kmalloc-3 1", "alloc: unknown cache 'kmalloc-3'"),
    ("spawn p\nalloc p kmalloc-64 many", "alloc: invalid number 'many'"),
    ("free nothing", "free: no objects allocated as 'nothing'"),
    ("spawn p\nspawn p", "spawn: a process named p exists"),
    ("spawn p nowhere", "sh: can't create nowhere/cgroup.procs: nonexistent directory"),
    ("settle now", "settle: usage: settle"),
    ("exit twice", "exit: usage: exit [N]"),
])
def test_a_failing_command_prints_the_tools_message_and_the_status_is_1(
        script: str, message: str) -> None:
    run = run_script(script)
    assert run.status == 1
    assert run.err.splitlines()[-1].startswith(message), run.err
    assert "Traceback" not in run.err


def test_mkdir_reports_each_failing_path_and_makes_the_others() -> None:
    run = run_script("mkdir a\nmkdir a b")
    assert run.err == "mkdir: can't create directory 'a': File exists\n"
    assert run.us.fs.isdir("b")


def test_a_good_script_exits_0_and_prints_only_what_cat_and_echo_print() -> None:
    run = run_script("# comment\n\nmkdir a  # trailing comment\necho hello\necho -n 0 > "
                     "a/memory.max\ncat a/memory.max\n")
    assert run.status == 0
    assert run.err == ""
    assert run.out == "hello\n0\n"


def test_strict_stops_at_the_first_failure() -> None:
    script = "rmdir nope\nmkdir a\n"
    assert run_script(script).us.fs.isdir("a")
    run = run_script(script, strict=True)
    assert run.status == 1
    assert not run.us.fs.isdir("a")


def test_exit_ends_the_script_with_its_status() -> None:
    run = run_script("exit 7\nmkdir a")
    assert run.status == 7
    assert not run.us.fs.isdir("a")
    assert run_script("rmdir nope\nexit").status == 1


def test_variables_expand_pids_and_assignments() -> None:
    run = run_script("spawn worker\nw=$!\necho $w ${worker} \"$worker\" '$worker' $unset.\n")
    pid = run.us.processes["worker"].pid
    assert run.out == f"{pid} {pid} {pid} $worker .\n"


def test_cd_pwd_and_ls_work_like_a_shell() -> None:
    run = run_script("mkdir a\ncd a\npwd\nmkdir b\nls\ncd ..\nls a/b\ncd /sys\npwd\nls\ncd\npwd")
    assert run.status == 0, run.err
    out = run.out.splitlines()
    assert out[0] == "/sys/fs/cgroup/a"
    assert out[1] == "b" and "memory.stat" in out and "cgroup.procs" in out
    assert "/sys" in out and "fs" in out
    assert out[-1] == "/sys/fs/cgroup"


def test_mkdir_p_makes_missing_parents_and_accepts_existing_ones() -> None:
    run = run_script("mkdir -p a/b/c\nmkdir -p a/b/c\n")
    assert run.status == 0, run.err
    assert run.us.fs.isdir("a/b/c")


def test_kill_ends_a_process_so_its_cgroup_can_go() -> None:
    run = run_script("mkdir a\nspawn p a\nkill -9 $p\nrmdir a\ncat cgroup.stat")
    assert run.status == 0, run.err
    assert run.out.startswith("nr_descendants 0\n")


def _slab(run_us: object, path: str) -> int:
    from memcgsim.userspace import Userspace

    assert isinstance(run_us, Userspace)
    stat = dict(line.split() for line in run_us.fs.read(path).splitlines())
    return int(stat["slab"])


def test_stat_missing_leaves_negative_dentries_that_a_second_pass_finds_cached() -> None:
    run = run_script("mkdir a\nspawn p a\nstat-missing p 1000\n")
    assert run.status == 0, run.err
    us = run.us
    slab = _slab(us, "a/memory.stat")
    current = int(us.fs.read("a/memory.current"))
    assert 1000 * 192 - 2 * 32 * 4096 <= slab <= 1000 * 192
    assert current >= 1000 * 192
    run2 = run_script("mkdir a\nspawn p a\nstat-missing p 1000\nstat-missing p 1000\n")
    assert int(run2.us.fs.read("a/memory.current")) == current  # all 1000 were cached
    run3 = run_script("mkdir a\nspawn p a\nstat-missing p 1000\nstat-missing p 2000\n")
    assert int(run3.us.fs.read("a/memory.current")) > current  # 1000 new names


def test_drop_caches_2_reclaims_negative_dentries_after_a_grace_period() -> None:
    run = run_script("mkdir a\nspawn p a\nstat-missing p 2000\ndrop_caches 1\n")
    us = run.us
    assert run.status == 0, run.err
    before = int(us.fs.read("a/memory.current"))
    assert before >= 2000 * 192  # level 1 (the page cache) leaves slab alone
    sh = Shell(us, io.StringIO(), io.StringIO())
    assert sh.run_lines(["echo 2 > /proc/sys/vm/drop_caches", "sleep 0.1"]) == 0
    assert us.sysctl_drop_caches == 2
    # What stays charged is at most the per-cpu stocks' (MEMCG_CHARGE_BATCH pages each).
    assert int(us.fs.read("a/memory.current")) <= us.k.nr_cpus * 32 * 4096 < before
    assert _slab(us, "a/memory.stat") < 2000 * 192 // 4
    # The names are gone from the dcache: the same stat calls allocate again.
    assert sh.run_lines(["stat-missing p 2000"]) == 0
    assert int(us.fs.read("a/memory.current")) >= 2000 * 192


def test_help_lists_every_command() -> None:
    run = run_script("help")
    for cmd in ("mkdir", "rmdir", "cat", "echo", "spawn", "alloc", "free", "stat-missing",
                "sleep", "drop_caches", "settle"):
        assert any(line.startswith(cmd) for line in run.out.splitlines()), cmd


def test_waitpid_lets_deferred_work_run_while_the_parent_sleeps() -> None:
    run = run_script("mkdir a\nmkdir a/b\nrmdir a/b")
    us = run.us
    assert us.fs.read("a/cgroup.stat") == "nr_descendants 0\nnr_dying_descendants 1\n"
    child = us.fork("child", persistent=True)
    with pytest.raises(ValueError, match="has not exited"):
        us.waitpid(child)
    us.exit(child)
    us.waitpid(child)
    assert us.fs.read("a/cgroup.stat") == "nr_descendants 0\nnr_dying_descendants 0\n"
