"""lib/: memparse(), kstrtoint() and simple_strtoull() parse as the kernel's do."""

from __future__ import annotations

import pytest

from memcgsim.kernel.errno import EINVAL, ERANGE
from memcgsim.lib.cmdline import memparse
from memcgsim.lib.kstrtox import kstrtoint, kstrtoull, simple_strtoull, strstrip


@pytest.mark.parametrize(("text", "value", "end"), [
    ("4096", 4096, 4),
    ("1k", 1024, 2),
    ("1K", 1024, 2),
    ("1m", 1 << 20, 2),
    ("1M", 1 << 20, 2),
    ("1g", 1 << 30, 2),
    ("1G", 1 << 30, 2),
    ("2T", 2 << 40, 2),
    ("1p", 1 << 50, 2),
    ("1E", 1 << 60, 2),
    ("0x10", 16, 4),
    ("010", 8, 3),
    ("0x", 0, 1),  # no hex digit after 0x: octal 0, stops at the x
    ("1.5M", 1, 1),
    ("-1", 0, 0),
    ("foo", 0, 0),
    ("", 0, 0),
    ("16E", 0, 3),  # 16 << 60 wraps to 0 in 64 bits
    ("1kb", 1024, 2),
])
def test_memparse_parses_a_number_and_one_suffix(text: str, value: int, end: int) -> None:
    assert memparse(text) == (value, end)


def test_simple_strtoull_wraps_on_overflow_and_reports_where_it_stopped() -> None:
    assert simple_strtoull("18446744073709551617x") == (1, 20)
    assert simple_strtoull("0xfFz") == (255, 4)


@pytest.mark.parametrize(("text", "result"), [
    ("12", (0, 12)),
    ("12\n", (0, 12)),
    ("+12", (0, 12)),
    ("-12", (0, -12)),
    ("0x1f", (0, 31)),
    ("", (-EINVAL, 0)),
    ("12 ", (-EINVAL, 0)),
    ("1.5", (-EINVAL, 0)),
    ("2147483647", (0, 2147483647)),
    ("2147483648", (-ERANGE, 0)),
    ("-2147483648", (0, -2147483648)),
    ("99999999999999999999", (-ERANGE, 0)),
])
def test_kstrtoint_accepts_one_trailing_newline_and_checks_range(
        text: str, result: tuple[int, int]) -> None:
    assert kstrtoint(text) == result


def test_kstrtoull_rejects_a_sign_it_cannot_hold() -> None:
    assert kstrtoull("-1") == -EINVAL
    assert kstrtoull("18446744073709551615") == (1 << 64) - 1
    assert kstrtoull("18446744073709551616") == -ERANGE


def test_strstrip_removes_c_whitespace_at_both_ends() -> None:
    assert strstrip(" \t4096\n\v\f\r") == "4096"
    assert strstrip("a b") == "a b"
