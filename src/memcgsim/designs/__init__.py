"""Accounting designs behind one interface, selected by name (DESIGN.md §3)."""

from __future__ import annotations

from memcgsim.designs.base import KmemDesign
from memcgsim.designs.memcg_ptr import MemcgPtrDesign
from memcgsim.designs.objcg import ObjcgDesign

__all__ = ["DESIGNS", "KmemDesign", "MemcgPtrDesign", "ObjcgDesign", "make_design"]

#: name -> design class; later designs register here
DESIGNS: dict[str, type[KmemDesign]] = {
    MemcgPtrDesign.name: MemcgPtrDesign,
    ObjcgDesign.name: ObjcgDesign,
}


def make_design(name: str) -> KmemDesign:
    """A fresh design object by name; ValueError naming the known ones otherwise."""
    try:
        cls = DESIGNS[name]
    except KeyError:
        known = ", ".join(sorted(DESIGNS))
        raise ValueError(f"unknown design {name!r} (known: {known})") from None
    return cls()
