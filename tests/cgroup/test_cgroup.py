"""cgroup core: mkdir/rmdir with the kernel's errnos, the css lifecycle, descendant counters."""

from __future__ import annotations

import pytest

from memcgsim import Kernel, KernelError
from memcgsim.cgroup.cgroup import (
    CSS_DYING,
    CSS_NO_REF,
    CSS_ONLINE,
    cgroup_is_dead,
    css_get,
    css_put,
    css_refcount,
    css_tryget,
    css_tryget_online,
)
from memcgsim.kernel.errno import EBUSY, EEXIST, EINVAL, ENOENT, ENOTDIR


def _errno(fn, *args: object) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(KernelError) as ei:
        fn(*args)
    return ei.value.errno


def test_mkdir_creates_a_cgroup_counted_in_every_ancestor(k: Kernel) -> None:
    k.mkdir("/a", subtree_control="+memory")
    k.mkdir("/a/b")
    root = k.cgroup.root
    assert root.nr_descendants == 2
    assert k.lookup("/a").nr_descendants == 1
    assert k.lookup("/a/b").path == "/a/b"


def test_child_gets_a_memcg_only_if_parent_enables_memory(k: Kernel) -> None:
    k.mkdir("/a")  # root enables +memory: /a has its own memcg
    k.mkdir("/a/b")  # /a's subtree_control is empty: /a/b uses /a's memcg
    ss = k.cgroup.subsys("memory")
    assert k.lookup("/a").subsys[ss.id] is not None
    assert k.lookup("/a/b").subsys.get(ss.id) is None
    assert k.mem_cgroup("/a/b") is k.mem_cgroup("/a")


def test_mkdir_errors_carry_kernel_errnos(k: Kernel) -> None:
    k.mkdir("/a")
    assert _errno(k.mkdir, "/a") == EEXIST
    assert _errno(k.mkdir, "/missing/b") == ENOENT
    assert _errno(k.mkdir, "/a/cgroup.procs") == EEXIST
    assert _errno(k.mkdir, "/a/cgroup.procs/x") == ENOTDIR
    assert _errno(k.mkdir, "/a/bad\nname") == EINVAL
    assert _errno(k.mkdir, "/") == EEXIST


def test_long_names_are_accepted_as_kernfs_does(k: Kernel) -> None:
    name = "x" * 1024
    k.mkdir("/" + name)
    k.rmdir("/" + name)


def test_rmdir_errors_carry_kernel_errnos(k: Kernel) -> None:
    k.mkdir("/a", subtree_control="+memory")
    k.mkdir("/a/b")
    assert _errno(k.rmdir, "/missing") == ENOENT
    assert _errno(k.rmdir, "/a") == EBUSY  # a live child
    assert _errno(k.rmdir, "/a/memory.stat") == ENOTDIR
    assert _errno(k.rmdir, "/") == EBUSY
    p = k.new_process("p", "/a/b")
    assert _errno(k.rmdir, "/a/b") == EBUSY  # a task
    k.attach(p, "/")
    k.rmdir("/a/b")
    k.rmdir("/a")  # dying children do not block rmdir
    assert _errno(k.rmdir, "/a") == ENOENT


def test_no_internal_processes_with_controllers_enabled(k: Kernel) -> None:
    k.mkdir("/a", subtree_control="+memory")
    p = k.new_process("p")
    assert _errno(k.attach, p, "/a") == EBUSY


def test_rmdir_moves_cgroup_to_dying_until_released(k: Kernel) -> None:
    k.mkdir("/a", subtree_control="+memory")
    b = k.mkdir("/a/b")
    a = k.lookup("/a")
    k.rmdir("/a/b")
    assert cgroup_is_dead(b)
    assert a.nr_descendants == 0
    assert a.nr_dying_descendants == 1
    assert k.cgroup.root.nr_dying_descendants == 1
    k.settle()
    assert a.nr_dying_descendants == 0
    assert k.cgroup.root.nr_dying_descendants == 0
    assert b._kstate.name == "FREED"


def test_css_lifecycle_order_offline_before_release_before_free(k: Kernel) -> None:
    k.mkdir("/a")
    k.rmdir("/a")
    k.settle()
    events = [e.what for e in k.events if e.what in (
        "rmdir", "css_offline", "css_released", "css_free", "cgroup_released", "cgroup_free")]
    assert events == ["rmdir", "css_offline", "css_released", "css_free", "cgroup_released",
                      "cgroup_free"]


def test_parent_is_offlined_only_after_its_children(k: Kernel) -> None:
    k.mkdir("/a", subtree_control="+memory")
    k.mkdir("/a/b")
    k.rmdir("/a/b")
    k.rmdir("/a")  # before /a/b's offline work has run
    k.settle()
    offl = [e.detail for e in k.events if e.what == "css_offline"]
    assert offl == ["memory /a/b", "memory /a"]


def test_root_css_has_no_refcount(k: Kernel) -> None:
    root = k.memcg.root_mem_cgroup
    assert root is not None
    assert root.flags & CSS_NO_REF
    k.call(lambda k: (css_get(k, root), css_put(k, root), css_put(k, root)))
    assert css_refcount(root) is None
    assert k.call(lambda k: css_tryget_online(k, root))


def test_css_tryget_works_on_an_offline_css_but_tryget_online_does_not(k: Kernel) -> None:
    k.mkdir("/a")
    m = k.mem_cgroup("/a")
    held = {"n": 1}
    k.memcg.extra_css_refs.append(lambda k, memcg: held["n"] if memcg is m else 0)
    k.call(lambda k: css_get(k, m))  # something keeps the memcg alive
    k.rmdir("/a")
    k.settle()
    assert m.flags & CSS_DYING and not m.flags & CSS_ONLINE
    held["n"] = 2
    assert k.call(lambda k: css_tryget(k, m)) is True
    assert k.call(lambda k: css_tryget_online(k, m)) is False
    held["n"] = 0
    k.call(lambda k: (css_put(k, m), css_put(k, m)))
    k.settle()
    assert m._kstate.name == "FREED"


def test_task_pins_its_css_until_it_moves(k: Kernel) -> None:
    k.mkdir("/a")
    m = k.mem_cgroup("/a")
    before = css_refcount(m)
    p = k.new_process("p", "/a")
    assert css_refcount(m) == (before or 0) + 1
    k.attach(p, "/")
    k.settle()
    assert css_refcount(m) == before


def test_subtree_control_errors(k: Kernel) -> None:
    k.mkdir("/a")
    assert _errno(k.set_subtree_control, "/a", "+nonexistent") == EINVAL
    assert _errno(k.set_subtree_control, "/a", "memory") == EINVAL
    k.mkdir("/a/b")
    assert _errno(k.set_subtree_control, "/a/b", "+memory") == ENOENT  # /a does not enable it
    k.set_subtree_control("/a", "+memory")
    assert k.lookup("/a/b").subsys[k.cgroup.subsys("memory").id] is not None
    k.set_subtree_control("/a/b", "+memory")
    assert _errno(k.set_subtree_control, "/a", "-memory") == EBUSY


def test_enabling_memory_moves_tasks_to_the_new_css(k: Kernel) -> None:
    k.mkdir("/a")
    k.mkdir("/a/b")
    p = k.new_process("p", "/a/b")
    assert k.mem_cgroup("/a/b") is k.mem_cgroup("/a")
    k.set_subtree_control("/a", "+memory")
    mb = k.mem_cgroup("/a/b")
    assert mb is not k.mem_cgroup("/a")
    assert p.cgroups.subsys[k.cgroup.subsys("memory").id] is mb
    k.settle()
