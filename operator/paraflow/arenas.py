"""Two malloc arenas for the operator process, as ``MALLOC_ARENA_MAX=2`` would give.

glibc gives each thread that allocates an arena of its own (up to eight per core), and memory
Python frees stays spread over them: the operator's Kubernetes-client threads decode and build
requests on many threads at once, and its resident memory kept the high-water mark of every
arena. Set at start, before any thread exists; wherever the operator runs (its image, a local
process, a user's own packaging), not only where an env var was remembered.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_ARENA_MAX = -8  # glibc's <malloc.h>


def limit(count: int = 2) -> bool:
    """True if the C library took the limit (glibc); False elsewhere (musl, macOS), harmlessly."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, count))
