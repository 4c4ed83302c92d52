"""Give freed heap memory back to the kernel after a burst of work.

A scan runs many collector threads at once; glibc gives each its own malloc arena, and
the memory they freed stays in the daemon's resident set until trimmed. malloc_trim(0)
returns it (all arenas, glibc >= 2.8). Without glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_libc: ctypes.CDLL | None = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _libc.malloc_trim.argtypes = [ctypes.c_size_t]
    _libc.malloc_trim.restype = ctypes.c_int
    _libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _libc.mallopt.restype = ctypes.c_int
except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
    _libc = None


M_ARENA_MAX = -8  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value


def limit_malloc_arenas(count: int = 1) -> bool:
    """Cap glibc's malloc arenas. By default each thread that allocates may get its own
    (up to 8 per CPU), and a discovery scan runs a thread per collector: their arenas
    stay mapped, fragmented, long after the threads are gone. The daemon's threads
    are short bursts under the GIL, not throughput work, so one arena loses nothing
    measurable (a second one kept 2-9 MiB resident after a scan). Call before threads
    start."""
    if _libc is None:
        return False
    # A fixed threshold also turns off glibc's sliding one, which after the first big
    # free (a 350 KB report text) serves such blocks from the heap, where they
    # fragment it; mmapped blocks go back to the kernel when freed.
    _libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    return bool(_libc.mallopt(M_ARENA_MAX, count))


def release_free_memory() -> bool:
    """True when the C library returned some memory to the kernel."""
    if _libc is None:
        return False
    return bool(_libc.malloc_trim(0))
