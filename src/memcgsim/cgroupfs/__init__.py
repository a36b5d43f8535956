"""cgroupfs: the cgroup v2 file system over a :class:`~memcgsim.kernel.kernel.Kernel`, by path.

The hierarchy is mounted at ``/sys/fs/cgroup``, as on a systemd machine.  Paths are resolved
the way the VFS resolves them: absolute, or relative to the working directory (which starts
at the mount point), component by component, with ``.`` and ``..``.  Outside the mount the
model has only the directories leading to it (``/``, ``/sys``, ``/sys/fs``).  Every operation
runs as a system call of one process (``task``, a shell in the root cgroup unless given) and
fails with :class:`~memcgsim.kernel.errno.KernelError` carrying the errno the kernel returns:

- mkdir: EEXIST (name taken, by a cgroup or a file), ENOENT / ENOTDIR (bad parent), EPERM
  (outside the mount), EINVAL (a newline in the name), EAGAIN (cgroup.max.* reached).  Names
  longer than 255 bytes are accepted: kernfs does not apply NAME_MAX (observed on 6.1); a
  path of PATH_MAX (4096) bytes or more fails with ENAMETOOLONG.
- rmdir: EBUSY (live children, processes, or a mount point), ENOENT, ENOTDIR, EINVAL for a
  last component ``.``, ENOTEMPTY for ``..``.
- read: EISDIR for a directory, EINVAL for a write-only file (cgroup_seqfile_show()).
- write: EINVAL for a read-only file (cgroup_file_write()), the handler's errno for a bad
  value, EACCES for a file that does not exist (kernfs cannot create files), E2BIG beyond
  PAGE_SIZE bytes (the files' atomic_write_len).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from memcgsim.cgroup.cgroup import Cgroup, cgroup_mkdir, cgroup_parent, cgroup_path, cgroup_rmdir
from memcgsim.cgroupfs.files import Cftype, KernfsOpenFile, cgroup_files
from memcgsim.kernel.errno import (
    E2BIG,
    EACCES,
    EBUSY,
    EEXIST,
    EINVAL,
    EISDIR,
    ENAMETOOLONG,
    ENOENT,
    ENOTDIR,
    ENOTEMPTY,
    EPERM,
    KernelError,
)
from memcgsim.kernel.syscall import do_syscall
from memcgsim.kernel.task import TaskState

if TYPE_CHECKING:
    from memcgsim.cgroup.cgroup import CgroupSubsysState
    from memcgsim.kernel.kernel import Kernel
    from memcgsim.kernel.task import Task

__all__ = ["CGROUP_MOUNT", "PATH_MAX", "CgroupFs", "Dentry"]

#: where the default hierarchy is mounted
CGROUP_MOUNT = "/sys/fs/cgroup"
#: PATH_MAX, including the terminating NUL
PATH_MAX = 4096

T = TypeVar("T")

_OUTER = ("/", "/sys", "/sys/fs")


@dataclass(frozen=True)
class Dentry:
    """What a path names: a directory outside the mount (``outer``), a cgroup directory, or a
    cgroup interface file (``cft`` with its ``css``)."""

    outer: str | None = None
    cgrp: Cgroup | None = None
    cft: Cftype | None = None
    css: CgroupSubsysState | None = None

    @property
    def is_dir(self) -> bool:
        return self.cft is None

    def path(self) -> str:
        """The absolute path of a directory."""
        if self.outer is not None:
            return self.outer
        assert self.cgrp is not None
        p = cgroup_path(self.cgrp)
        return CGROUP_MOUNT if p == "/" else CGROUP_MOUNT + p


class CgroupFs:
    """The cgroup2 mount at /sys/fs/cgroup, operated on by path as one process would."""

    def __init__(self, k: Kernel, task: Task | None = None, cwd: str = CGROUP_MOUNT) -> None:
        self.k = k
        self._task = task
        self.cwd = "/"
        self.chdir(cwd)

    # ------------------------------------------------------------------ the calling process
    @property
    def task(self) -> Task:
        """The process whose system calls these are (a shell in the root cgroup by default)."""
        t = self._task
        if t is None or t.state is TaskState.DONE:
            t = self._task = self.k.new_process("sh", "/")
        return t

    def _syscall(self, fn: Callable[..., T], *args: Any) -> T:
        return do_syscall(self.k, self.task, fn, *args)

    # ------------------------------------------------------------------ lookup
    def _root(self) -> Dentry:
        return Dentry(outer="/")

    def _child(self, d: Dentry, name: str) -> Dentry | None:
        """lookup of ``name`` in the directory ``d``."""
        if d.outer is not None:
            nxt = (d.outer.rstrip("/") + "/" + name)
            if nxt in _OUTER:
                return Dentry(outer=nxt)
            if nxt == CGROUP_MOUNT:
                return Dentry(cgrp=self.k.cgroup.root)
            return None
        assert d.cgrp is not None
        child = d.cgrp.kn_children.get(name)
        if child is not None:
            return Dentry(cgrp=child)
        f = cgroup_files(self.k, d.cgrp).get(name)
        if f is not None:
            return Dentry(cgrp=d.cgrp, cft=f[0], css=f[1])
        return None

    def _parent(self, d: Dentry) -> Dentry:
        if d.outer is not None:
            return Dentry(outer=d.outer.rsplit("/", 1)[0] or "/")
        assert d.cgrp is not None
        parent = cgroup_parent(d.cgrp)
        if parent is None:
            return Dentry(outer="/sys/fs")
        return Dentry(cgrp=parent)

    def lookup(self, path: str) -> Dentry:
        """Resolve ``path`` (path_lookupat()); KernelError ENOENT, ENOTDIR or ENAMETOOLONG."""
        if len(path.encode()) >= PATH_MAX:
            raise KernelError(ENAMETOOLONG, path)
        if not path:
            raise KernelError(ENOENT, path)
        d = self._root() if path.startswith("/") else self._cwd()
        for comp in path.split("/"):
            if comp in ("", "."):
                if not d.is_dir and comp == ".":
                    raise KernelError(ENOTDIR, path)
                continue
            if not d.is_dir:
                raise KernelError(ENOTDIR, path)
            if comp == "..":
                d = self._parent(d)
                continue
            nxt = self._child(d, comp)
            if nxt is None:
                raise KernelError(ENOENT, path)
            d = nxt
        if path.endswith("/") and not d.is_dir:
            raise KernelError(ENOTDIR, path)
        return d

    def _cwd(self) -> Dentry:
        d = self._root()
        for comp in self.cwd.split("/"):
            if comp:
                nxt = self._child(d, comp)
                if nxt is None or not nxt.is_dir:
                    # The working directory was removed: every relative lookup fails.
                    raise KernelError(ENOENT, self.cwd)
                d = nxt
        return d

    def _split(self, path: str) -> tuple[Dentry, str]:
        """The parent directory of ``path``'s last component, and that component."""
        if len(path.encode()) >= PATH_MAX:
            raise KernelError(ENAMETOOLONG, path)
        stripped = path.rstrip("/")
        if not stripped:
            return (self._root() if path else self._cwd()), ("/" if path else "")
        head, _, last = stripped.rpartition("/")
        if "/" not in stripped:
            parent = self._cwd()
        else:
            try:
                parent = self.lookup(head or "/")
            except KernelError as e:
                raise KernelError(e.errno, path) from None
        if not parent.is_dir:
            raise KernelError(ENOTDIR, path)
        return parent, last

    # ------------------------------------------------------------------ directories
    def chdir(self, path: str) -> None:
        """chdir(2)."""
        d = self.lookup(path)
        if not d.is_dir:
            raise KernelError(ENOTDIR, path)
        self.cwd = d.path()

    def isdir(self, path: str) -> bool:
        try:
            return self.lookup(path).is_dir
        except KernelError:
            return False

    def exists(self, path: str) -> bool:
        try:
            self.lookup(path)
        except KernelError:
            return False
        return True

    def listdir(self, path: str = ".") -> list[str]:
        """The names in a directory: child cgroups, then interface files, each sorted."""
        d = self.lookup(path)
        if not d.is_dir:
            raise KernelError(ENOTDIR, path)
        if d.outer is not None:
            nxt = {"/": "sys", "/sys": "fs", "/sys/fs": "cgroup"}
            return [nxt[d.outer]]
        assert d.cgrp is not None
        return sorted(d.cgrp.kn_children) + sorted(cgroup_files(self.k, d.cgrp))

    def mkdir(self, path: str) -> None:
        """mkdir(2): create a cgroup."""
        parent, name = self._split(path)
        if name in ("", "/", ".", ".."):
            raise KernelError(EEXIST if name else ENOENT, path)
        if self._child(parent, name) is not None:
            raise KernelError(EEXIST, path)
        if parent.outer is not None:
            raise KernelError(EPERM, path)
        assert parent.cgrp is not None
        res = self._syscall(cgroup_mkdir, parent.cgrp, name)
        if isinstance(res, int):
            raise KernelError(res, path)

    def rmdir(self, path: str) -> None:
        """rmdir(2): remove a cgroup (it lingers as dying until its css are released)."""
        parent, name = self._split(path)
        if name == ".":
            raise KernelError(EINVAL, path)
        if name == "..":
            raise KernelError(ENOTEMPTY, path)
        if name in ("", "/"):
            raise KernelError(EBUSY if name else ENOENT, path)
        d = self._child(parent, name)
        if d is None:
            raise KernelError(ENOENT, path)
        if not d.is_dir:
            raise KernelError(ENOTDIR, path)
        if d.outer is not None or d.cgrp is self.k.cgroup.root:
            # "/" and "/sys" and the cgroup mount are mount points; sysfs has no rmdir.
            raise KernelError(EPERM if d.outer == "/sys/fs" else EBUSY, path)
        assert d.cgrp is not None
        ret = self._syscall(cgroup_rmdir, d.cgrp)
        if ret < 0:
            raise KernelError(ret, path)

    # ------------------------------------------------------------------ files
    def open(self, path: str, *, write: bool = False) -> Dentry:
        """open(2): the file or directory ``path`` names.

        For writing (O_WRONLY|O_CREAT|O_TRUNC, as a shell redirection opens), a directory
        fails with EISDIR and a missing name in an existing directory with EACCES (kernfs has
        no ->create); reading a directory fails only at read(2).
        """
        try:
            d = self.lookup(path)
        except KernelError as e:
            if not write or e.errno != ENOENT:
                raise
            self._split(path)  # ENOENT or ENOTDIR if the parent is missing too
            raise KernelError(EACCES, path) from None
        if write and d.is_dir:
            raise KernelError(EISDIR, path)
        return d

    def read_file(self, d: Dentry) -> str:
        """read(2) to the end of an open file: EISDIR for a directory, EINVAL for a file
        without a show handler (cgroup_seqfile_show())."""
        if d.is_dir:
            raise KernelError(EISDIR, d.path())
        assert d.cft is not None and d.cgrp is not None
        show = d.cft.seq_show
        if show is None:
            raise KernelError(EINVAL, d.cft.file_name)
        of = KernfsOpenFile(d.cgrp, d.css, d.cft, [])
        text: str = self._syscall(show, of)
        return text

    def write_file(self, d: Dentry, data: str) -> int:
        """One write(2) of ``data`` to an open file: E2BIG beyond PAGE_SIZE bytes, EINVAL
        for a file without a write handler (cgroup_file_write()), else the handler's result.
        Returns the bytes written."""
        assert d.cft is not None and d.cgrp is not None
        nbytes = len(data.encode())
        if nbytes > self.k.page_size:
            raise KernelError(E2BIG, d.cft.file_name)
        write = d.cft.write
        if write is None:
            raise KernelError(EINVAL, d.cft.file_name)
        of = KernfsOpenFile(d.cgrp, d.css, d.cft, [])
        ret: int = self._syscall(write, of, data)
        self._deliver_sigkill(of.killed)
        if ret < 0:
            raise KernelError(ret, d.cft.file_name)
        return nbytes

    def read(self, path: str) -> str:
        """open(2) and read(2) a whole file: what ``cat`` prints."""
        try:
            return self.read_file(self.open(path))
        except KernelError as e:
            raise KernelError(e.errno, path) from None

    def write(self, path: str, data: str) -> int:
        """open(2) for writing and one write(2) of ``data``: what ``echo data > path`` does
        (echo appends the newline).  Returns the bytes written."""
        try:
            return self.write_file(self.open(path, write=True), data)
        except KernelError as e:
            raise KernelError(e.errno, path) from None

    def _deliver_sigkill(self, tasks: list[Task]) -> None:
        """The killed processes run again, see the fatal signal and exit (do_exit())."""
        for t in tasks:
            if t.state is TaskState.IDLE:
                t.persistent = False
                do_syscall(self.k, t, _return_to_user_and_die)


def _return_to_user_and_die(k: Kernel) -> None:
    """The killed task's way out: nothing left to do; the runtime runs do_exit()."""
