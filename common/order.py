"""Natural order of names: ``cam_2`` before ``cam_10``, the one sort key for cameras, frames and files."""

from __future__ import annotations

import re


def natural_key(name: str) -> tuple:
    """Sort key that orders ``cam_2`` before ``cam_10`` (natural order, not string order)."""
    # ASCII digits only: str.isdigit() accepts characters such as "²" that int() rejects
    parts = re.split(r"([0-9]+)", name)
    return tuple((0, int(p), "") if i % 2 else (1, 0, p.lower()) for i, p in enumerate(parts))


__all__ = ["natural_key"]
