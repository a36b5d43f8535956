"""Accounting designs behind one interface, selected by name (DESIGN.md §3).

- ``page-pinning``: per-memcg cache copies, each slab page pins its memcg (4.x to 5.2);
- ``cache-reparent``: per-memcg copies reparented at offline, destroyed when empty (5.3);
- ``walk``: objects point at the memcg; offline repoints every object (strawman);
- ``memcg-ptr``: the seed, objects reference a mem_cgroup_ptr (RFC, 2019);
- ``objcg``: the seed as merged, struct obj_cgroup (5.9).
"""

from __future__ import annotations

from memcgsim.designs.base import KmemDesign, ReparentWork
from memcgsim.designs.cache_reparent import CacheReparentDesign
from memcgsim.designs.memcg_ptr import MemcgPtrDesign
from memcgsim.designs.objcg import ObjcgDesign
from memcgsim.designs.page_pinning import PagePinningDesign
from memcgsim.designs.walk import WalkDesign

__all__ = [
    "DESIGNS",
    "DESIGN_ORDER",
    "CacheReparentDesign",
    "KmemDesign",
    "MemcgPtrDesign",
    "ObjcgDesign",
    "PagePinningDesign",
    "ReparentWork",
    "WalkDesign",
    "make_design",
]

#: name -> design class
DESIGNS: dict[str, type[KmemDesign]] = {
    cls.name: cls
    for cls in (PagePinningDesign, CacheReparentDesign, WalkDesign, MemcgPtrDesign, ObjcgDesign)
}

#: the designs in historical order (reports list them so)
DESIGN_ORDER: tuple[str, ...] = tuple(DESIGNS)


def make_design(name: str) -> KmemDesign:
    """A fresh design object by name; ValueError naming the known ones otherwise."""
    try:
        cls = DESIGNS[name]
    except KeyError:
        known = ", ".join(DESIGN_ORDER)
        raise ValueError(f"unknown design {name!r} (known: {known})") from None
    return cls()
