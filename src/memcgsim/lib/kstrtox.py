"""Integer parsing as the kernel does it (lib/kstrtox.c, lib/vsprintf.c's simple_strto*).

Both families share ``_parse_integer_fixup_radix()`` (base 0 picks hex for ``0x``, octal for a
leading ``0``, decimal otherwise) and ``_parse_integer()``.  ``kstrto*`` reject trailing garbage
(one trailing newline is allowed) and overflow; ``simple_strto*`` stop at the first non-digit,
report where, and wrap silently on overflow.
"""

from __future__ import annotations

from memcgsim.kernel.errno import EINVAL, ERANGE

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "ULLONG_MAX",
    "kstrtoint",
    "kstrtoull",
    "simple_strtoull",
    "strstrip",
]

ULLONG_MAX = (1 << 64) - 1
LLONG_MAX = (1 << 63) - 1
INT_MAX = (1 << 31) - 1
INT_MIN = -(1 << 31)

#: isspace() of lib/ctype.c for ASCII: space, \t, \n, \v, \f, \r
_SPACE = " \t\n\v\f\r"


def strstrip(s: str) -> str:
    """strstrip() (lib/string_helpers.c): remove leading and trailing whitespace."""
    return s.strip(_SPACE)


def _parse_integer_fixup_radix(s: str, base: int) -> tuple[int, int]:
    """_parse_integer_fixup_radix(): (base, index of the first digit)."""
    if base == 0:
        if s[:1] == "0":
            base = 16 if s[1:2].lower() == "x" and _digit(s[2:3], 16) is not None else 8
        else:
            base = 10
    if base == 16 and s[:1] == "0" and s[1:2].lower() == "x":
        return base, 2
    return base, 0


def _digit(c: str, base: int) -> int | None:
    if not c:
        return None
    if "0" <= c <= "9":
        val = ord(c) - ord("0")
    elif "a" <= c.lower() <= "f":
        val = ord(c.lower()) - ord("a") + 10
    else:
        return None
    return val if val < base else None


def _parse_integer(s: str, start: int, base: int) -> tuple[int, int, bool]:
    """_parse_integer(): (value mod 2**64, digits consumed, overflowed)."""
    res = 0
    i = start
    overflow = False
    while i < len(s):
        val = _digit(s[i], base)
        if val is None:
            break
        res = res * base + val
        if res > ULLONG_MAX:
            overflow = True
            res &= ULLONG_MAX
        i += 1
    return res, i - start, overflow


def simple_strtoull(s: str, base: int = 0) -> tuple[int, int]:
    """simple_strtoull(cp, &endp, base): (value, index of endp); wraps on overflow."""
    base, start = _parse_integer_fixup_radix(s, base)
    res, n, _ = _parse_integer(s, start, base)
    return res, start + n


def kstrtoull(s: str, base: int = 0) -> int:
    """kstrtoull(): the value, or a negative errno (-EINVAL, -ERANGE) as the kernel returns.

    A leading ``+`` is accepted, one trailing newline is allowed, nothing else may follow.
    """
    if s[:1] == "+":
        s = s[1:]
    base, start = _parse_integer_fixup_radix(s, base)
    res, n, overflow = _parse_integer(s, start, base)
    if overflow:
        return -ERANGE
    if n == 0:
        return -EINVAL
    rest = s[start + n:]
    if rest not in ("", "\n"):
        return -EINVAL
    return res


def kstrtoint(s: str, base: int = 0) -> tuple[int, int]:
    """kstrtoint(s, base, &res): (0, value) or (negative errno, 0).

    Goes through kstrtoll(): ``-`` negates, the result must fit an int (-ERANGE otherwise).
    """
    neg = s[:1] == "-"
    val = kstrtoull(s[1:] if neg else s, base)
    if val < 0:
        return val, 0
    if neg:
        if val > LLONG_MAX + 1:
            return -ERANGE, 0
        val = -val
    elif val > LLONG_MAX:
        return -ERANGE, 0
    if not INT_MIN <= val <= INT_MAX:
        return -ERANGE, 0
    return 0, val
