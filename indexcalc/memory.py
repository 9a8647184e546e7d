"""The machine's memory, and sizes in words a person reads: what the plan (an array no
machine of this size could hold) and the data sets (a file claiming more) refuse by,
in a module of its own at the bottom, so that both can."""

from __future__ import annotations

import os


def human_size(nbytes: int) -> str:
    """Bytes as a person reads them: 512 B, 3.1 MB, 80.0 GB (powers of 1000)."""
    size = float(nbytes)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if size < 1000 or unit == "PB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{nbytes} B"


def memory_size() -> int | None:
    """This machine's physical memory in bytes, where the system says."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
