"""memparse() (lib/cmdline.c): a number with an optional K/M/G/T/P/E suffix."""

from __future__ import annotations

from memcgsim.lib.kstrtox import ULLONG_MAX, simple_strtoull

__all__ = ["memparse"]

_SHIFT = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}


def memparse(ptr: str) -> tuple[int, int]:
    """memparse(ptr, &retptr): (bytes, index just past what was parsed).

    simple_strtoull() with base 0 (so ``0x1000`` and ``010`` parse as hex and octal), then one
    optional suffix letter, either case, each a shift by 10 more bits, wrapping at 64 bits as
    the kernel's unsigned long long does.  The caller decides whether anything may follow.
    """
    ret, end = simple_strtoull(ptr, 0)
    shift = _SHIFT.get(ptr[end:end + 1].lower())
    if shift is not None:
        ret = (ret << shift) & ULLONG_MAX
        end += 1
    return ret, end
