"""No input makes the shell crash: random lines of words, paths, numbers and operators give
messages and a status, never an internal error or a traceback."""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memcgsim import Kernel
from memcgsim.shell import COMMANDS, Shell
from memcgsim.userspace import Userspace

_WORDS = st.one_of(
    st.sampled_from([*COMMANDS, "cat", "echo", "spawn", "alloc", "as", ">", ">>", "-p", "-n",
                     "a", "a/b", "/", "..", ".", "/sys/fs/cgroup", "/proc/sys/vm/drop_caches",
                     "cgroup.procs", "a/cgroup.procs", "memory.max", "a/memory.max",
                     "a/memory.high", "a/cgroup.subtree_control", "a/cgroup.kill",
                     "+memory", "-memory", "max", "1M", "0", "1", "-1", "2", "4096",
                     "kmalloc-64", "dentry", "w", "$w", "$!", "'", '"', "#", "\\", "${",
                     "x=1", "1.5", "99999"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8),
)
_LINE = st.lists(_WORDS, max_size=6).map(" ".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LINE, min_size=1, max_size=12))
def test_random_lines_never_crash_the_shell(lines: list[str]) -> None:
    us = Userspace(Kernel(nr_cpus=2, seed=0))
    out, err = io.StringIO(), io.StringIO()
    sh = Shell(us, out, err)
    status = sh.run_lines(["mkdir a", "spawn w", *lines])
    assert isinstance(status, int) and 0 <= status <= 255
    assert "internal error" not in err.getvalue(), err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert "kernel panic" not in err.getvalue(), err.getvalue()
