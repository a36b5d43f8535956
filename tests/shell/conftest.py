"""Running shell scripts on a fresh kernel and capturing what they print."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from memcgsim import Kernel
from memcgsim.shell import Shell
from memcgsim.userspace import Userspace

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


@dataclass
class Run:
    status: int
    out: str
    err: str
    us: Userspace


def run_script(script: str, *, design: str = "memcg-ptr", strict: bool = False,
               nr_cpus: int = 2) -> Run:
    """Run ``script`` in a new shell on a new kernel."""
    us = Userspace(Kernel(nr_cpus=nr_cpus, seed=0, design=design))
    out, err = io.StringIO(), io.StringIO()
    status = Shell(us, out, err, strict=strict).run_lines(script.splitlines())
    return Run(status, out.getvalue(), err.getvalue(), us)
