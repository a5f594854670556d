"""Range-compressed index sets, in the same ``0-3,7,9-12`` form as Job.status.completedIndexes.

The form keeps status small when indexes finish roughly in order, which the planner arranges by
always starting the lowest pending index first.
"""

from __future__ import annotations

from collections.abc import Iterable


def compress(indexes: Iterable[int]) -> str:
    ordered = sorted(set(indexes))
    if not ordered:
        return ""
    parts: list[str] = []
    start = prev = ordered[0]
    for i in ordered[1:]:
        if i == prev + 1:
            prev = i
            continue
        parts.append(_span(start, prev))
        start = prev = i
    parts.append(_span(start, prev))
    return ",".join(parts)


def _span(start: int, end: int) -> str:
    return str(start) if start == end else f"{start}-{end}"


def expand(text: str) -> set[int]:
    """Inverse of :func:`compress`; raises ValueError on anything else."""
    out: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, sep, hi = part.partition("-")
        first, last = int(lo), int(hi) if sep else int(lo)
        if first < 0 or last < first:
            raise ValueError(f"bad index range {part!r}")
        out.update(range(first, last + 1))
    return out
