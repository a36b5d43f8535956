"""Kernel error numbers and the exception that carries one (include/uapi/asm-generic/errno-base.h)."""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "E2BIG",
    "EACCES",
    "EAGAIN",
    "EBUSY",
    "EEXIST",
    "EINVAL",
    "EISDIR",
    "ENAMETOOLONG",
    "ENODEV",
    "ENOENT",
    "ENOMEM",
    "ENOSPC",
    "ENOTDIR",
    "ENOTEMPTY",
    "EOPNOTSUPP",
    "EPERM",
    "ERANGE",
    "ESRCH",
    "KernelError",
    "errno_name",
]

EPERM = _errno.EPERM
EAGAIN = _errno.EAGAIN
ENODEV = _errno.ENODEV
ENOENT = _errno.ENOENT
ENOMEM = _errno.ENOMEM
EBUSY = _errno.EBUSY
EEXIST = _errno.EEXIST
ENOTDIR = _errno.ENOTDIR
EINVAL = _errno.EINVAL
ENOSPC = _errno.ENOSPC
ENOTEMPTY = _errno.ENOTEMPTY
ESRCH = _errno.ESRCH
E2BIG = _errno.E2BIG
EACCES = _errno.EACCES
EISDIR = _errno.EISDIR
ERANGE = _errno.ERANGE
ENAMETOOLONG = _errno.ENAMETOOLONG
EOPNOTSUPP = _errno.EOPNOTSUPP


def errno_name(err: int) -> str:
    """Return the symbolic name of ``err`` (``16`` -> ``"EBUSY"``)."""
    return _errno.errorcode.get(abs(err), f"E{abs(err)}")


class KernelError(Exception):
    """A system call failed with a kernel errno, as a negative return value would say.

    ``str()`` gives one line: what was attempted, then the C library's text for the errno,
    so that a command-line front end can print it as a shell would.
    """

    def __init__(self, err: int, what: str = "") -> None:
        self.errno = abs(err)
        self.what = what
        super().__init__(str(self))

    @property
    def name(self) -> str:
        return errno_name(self.errno)

    @property
    def strerror(self) -> str:
        return os.strerror(self.errno)

    def __str__(self) -> str:
        if self.what:
            return f"{self.what}: {self.strerror} ({self.name})"
        return f"{self.strerror} ({self.name})"
