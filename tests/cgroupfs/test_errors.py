"""Every operation fails with the errno the kernel gives, and a failed write changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from memcgsim import KernelError
from memcgsim.kernel.errno import (
    E2BIG,
    EACCES,
    EAGAIN,
    EBUSY,
    EEXIST,
    EINVAL,
    EISDIR,
    ENAMETOOLONG,
    ENOENT,
    ENOTDIR,
    ENOTEMPTY,
    EOPNOTSUPP,
    EPERM,
    ERANGE,
    ESRCH,
)
from memcgsim.userspace import Userspace


def errno_of(fn: Callable[..., object], *args: object) -> int:
    with pytest.raises(KernelError) as ei:
        fn(*args)
    return ei.value.errno


def test_mkdir_errnos(fa_fb: Userspace) -> None:
    fs = fa_fb.fs
    assert errno_of(fs.mkdir, "fa") == EEXIST
    assert errno_of(fs.mkdir, "fa/memory.max") == EEXIST
    assert errno_of(fs.mkdir, "/sys/fs/cgroup") == EEXIST
    assert errno_of(fs.mkdir, "fa/.") == EEXIST
    assert errno_of(fs.mkdir, "missing/x") == ENOENT
    assert errno_of(fs.mkdir, "fa/memory.max/x") == ENOTDIR
    assert errno_of(fs.mkdir, "fa/bad\nname") == EINVAL
    assert errno_of(fs.mkdir, "/x") == EPERM
    assert errno_of(fs.mkdir, "/sys/fs/y") == EPERM
    assert errno_of(fs.mkdir, "a" * 4096) == ENAMETOOLONG


@pytest.mark.parametrize("length", [255, 256, 1024])
def test_long_names_are_accepted_as_6_1_accepts_them(us: Userspace, length: int) -> None:
    name = "n" * length
    us.fs.mkdir(name)
    assert us.fs.read(f"{name}/cgroup.events") == "populated 0\nfrozen 0\n"
    us.fs.rmdir(name)
    assert not us.fs.exists(name)


def test_rmdir_errnos(fa_fb: Userspace) -> None:
    us = fa_fb
    fs = us.fs
    assert errno_of(fs.rmdir, "fa") == EBUSY  # a live child
    assert errno_of(fs.rmdir, "nonexistent") == ENOENT
    assert errno_of(fs.rmdir, "fa/memory.stat") == ENOTDIR
    assert errno_of(fs.rmdir, "fa/fb/.") == EINVAL
    assert errno_of(fs.rmdir, "fa/fb/..") == ENOTEMPTY
    assert errno_of(fs.rmdir, "/sys/fs/cgroup") == EBUSY
    assert errno_of(fs.rmdir, "/sys/fs") == EPERM
    p = us.spawn("p", "fa/fb")
    assert errno_of(fs.rmdir, "fa/fb") == EBUSY  # a process
    us.exit(p)
    fs.rmdir("fa/fb")
    fs.rmdir("fa")  # a dying child does not keep the parent busy
    assert errno_of(fs.rmdir, "fa") == ENOENT


def test_read_errnos(fa_fb: Userspace) -> None:
    fs = fa_fb.fs
    assert errno_of(fs.read, "fa") == EISDIR
    assert errno_of(fs.read, "fa/cgroup.kill") == EINVAL  # write-only
    assert errno_of(fs.read, "fa/nope") == ENOENT
    assert errno_of(fs.read, "fa/memory.stat/") == ENOTDIR


def test_write_errnos(fa_fb: Userspace) -> None:
    fs = fa_fb.fs
    assert errno_of(fs.write, "fa/memory.current", "1\n") == EINVAL  # read-only
    assert errno_of(fs.write, "fa/memory.stat", "1\n") == EINVAL
    assert errno_of(fs.write, "fa/nope", "1\n") == EACCES  # kernfs cannot create files
    assert errno_of(fs.write, "missing/nope", "1\n") == ENOENT
    assert errno_of(fs.write, "fa", "1\n") == EISDIR
    assert errno_of(fs.write, "fa/memory.max", "1" * 4097) == E2BIG


@pytest.mark.parametrize(("value", "expected"), [
    ("max\n", "max\n"),
    ("1m\n", "1048576\n"),
    ("1M\n", "1048576\n"),
    ("1g\n", "1073741824\n"),
    ("1G\n", "1073741824\n"),
    ("1k\n", "0\n"),  # rounded down to whole pages
    ("1K\n", "0\n"),
    ("4095\n", "0\n"),
    ("4097\n", "4096\n"),
    (" 4096 \n", "4096\n"),  # strstrip()
    ("0x2000\n", "8192\n"),
    ("\n", "0\n"),  # memparse("") is 0 and consumes everything
])
@pytest.mark.parametrize("file", ["memory.max", "memory.high", "memory.min", "memory.low"])
def test_limits_accept_memparse_forms(fa_fb: Userspace, file: str, value: str,
                                      expected: str) -> None:
    fa_fb.fs.write(f"fa/{file}", value)
    assert fa_fb.fs.read(f"fa/{file}") == expected


@pytest.mark.parametrize("value", ["foo\n", "-1\n", "1.5M\n", "1MB\n", "max max\n", "0x\n"])
@pytest.mark.parametrize("file", ["memory.max", "memory.high", "memory.min", "memory.low"])
def test_bad_limits_fail_with_einval_and_leave_the_value(fa_fb: Userspace, file: str,
                                                         value: str) -> None:
    fa_fb.fs.write(f"fa/{file}", "1m\n")
    assert errno_of(fa_fb.fs.write, f"fa/{file}", value) == EINVAL
    assert fa_fb.fs.read(f"fa/{file}") == "1048576\n"


def test_cgroup_procs_errnos(fa_fb: Userspace) -> None:
    us = fa_fb
    fs = us.fs
    p = us.spawn("p")
    assert errno_of(fs.write, "fa/fb/cgroup.procs", "abc\n") == EINVAL
    assert errno_of(fs.write, "fa/fb/cgroup.procs", "-1\n") == EINVAL
    assert errno_of(fs.write, "fa/fb/cgroup.procs", "99999\n") == ESRCH
    assert errno_of(fs.write, "fa/cgroup.procs", f"{p.pid}\n") == EBUSY  # no internal processes
    kthread = next(t for t in us.k.tasks if t.daemon)
    assert errno_of(fs.write, "fa/fb/cgroup.procs", f"{kthread.pid}\n") == EINVAL
    assert errno_of(fs.write, "fa/fb/cgroup.threads", f"{p.pid}\n") == EOPNOTSUPP
    fs.write("fa/fb/cgroup.procs", f"{p.pid}\n")
    assert fs.read("fa/fb/cgroup.procs") == f"{p.pid}\n"
    assert fs.read("fa/fb/cgroup.threads") == f"{p.pid}\n"
    fs.write("fa/fb/cgroup.threads", f"{p.pid}\n")  # within its own cgroup: fine


def test_subtree_control_errnos(fa_fb: Userspace) -> None:
    fs = fa_fb.fs
    assert errno_of(fs.write, "fa/cgroup.subtree_control", "+nonexistent\n") == EINVAL
    assert errno_of(fs.write, "fa/cgroup.subtree_control", "memory\n") == EINVAL
    fs.mkdir("x")
    fs.mkdir("x/y")
    assert errno_of(fs.write, "x/y/cgroup.subtree_control", "+memory\n") == ENOENT
    fs.write("fa/fb/cgroup.subtree_control", "+memory\n")
    assert errno_of(fs.write, "fa/cgroup.subtree_control", "-memory\n") == EBUSY
    fa_fb.spawn("q", "x")
    assert errno_of(fs.write, "x/cgroup.subtree_control", "+memory\n") == EBUSY


def test_other_core_file_errnos(fa_fb: Userspace) -> None:
    fs = fa_fb.fs
    assert errno_of(fs.write, "fa/cgroup.type", "domain\n") == EINVAL
    assert errno_of(fs.write, "fa/cgroup.type", "threaded\n") == EOPNOTSUPP
    assert errno_of(fs.write, "fa/cgroup.kill", "2\n") == ERANGE
    assert errno_of(fs.write, "fa/cgroup.kill", "x\n") == EINVAL
    assert errno_of(fs.write, "fa/cgroup.max.descendants", "-1\n") == ERANGE
    assert errno_of(fs.write, "fa/cgroup.max.depth", "lots\n") == EINVAL
    assert errno_of(fs.write, "fa/memory.oom.group", "2\n") == EINVAL


def test_max_descendants_makes_mkdir_fail_with_eagain(fa_fb: Userspace) -> None:
    fs = fa_fb.fs
    fs.write("fa/cgroup.max.descendants", "1\n")
    assert fs.read("fa/cgroup.max.descendants") == "1\n"
    assert errno_of(fs.mkdir, "fa/fc") == EAGAIN
    fs.write("fa/cgroup.max.descendants", "max\n")
    fs.mkdir("fa/fc")
    fs.write("fa/cgroup.max.depth", "1\n")
    assert errno_of(fs.mkdir, "fa/fc/deeper") == EAGAIN


def test_memory_reclaim_fails_with_eagain_when_nothing_can_be_reclaimed(us: Userspace) -> None:
    us.fs.mkdir("a")
    w = us.spawn("w", "a")
    us.alloc(w, "kmalloc-4k", 10)
    assert errno_of(us.fs.write, "a/memory.reclaim", "1m\n") == EAGAIN
    us.fs.write("a/memory.reclaim", "0\n")
