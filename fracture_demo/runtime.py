"""Process-wide CPU settings that every entry point applies when it starts (``apply()``, before torch loads).

Two measured problems on small CPU machines (``bench/cpu_time.py``, docs/speed.md):

* **Page-fault churn.** glibc hands tensors above its mmap threshold (at most 32 MB) their own
  ``mmap`` and unmaps them on free, so every batch faults its activations back in: half of all
  CPU time went to the kernel (page zeroing, cgroup charging). ``mallopt(M_MMAP_MAX, 0)`` keeps
  large blocks on the heap and ``mallopt(M_TRIM_THRESHOLD, -1)`` keeps freed heap memory for reuse
  (the process keeps its peak heap; a batch of 64 at 224 px peaks near 1.1 GiB).
* **Spinning threads.** OpenMP workers spin after each parallel region; two processes (or two
  request threads) on two cores then fight over them. ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep,
  and torch's intra-op threads are sized to the cores this process may use.

The app (``app.py``), the training commands (``train/__init__.py``: every ``python -m train.*``) and the
benchmarks (``bench/__init__.py``) call ``apply()``; importing ``fracture_demo`` does not (a library leaves its
host process as it found it). Set ``FRACTURE_CPU_TUNING=0`` to leave the process as it was (to measure, or to debug). Harmless
where it does not apply: without glibc (macOS, musl, Windows) the allocator part is skipped.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import platform
import sys
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "FRACTURE_CPU_TUNING"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (malloc.h)
_NO_TRIM = -1  # mallopt(M_TRIM_THRESHOLD, -1): never give freed heap back (the process keeps its peak)


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def usable_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep large and freed blocks (no mmap/munmap per tensor); False if not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _NO_TRIM) == 1
    except (OSError, AttributeError):
        return False
    return ok


@functools.cache
def apply() -> dict:
    """Apply the settings once, before torch is imported; returns what was done (also logged at debug)."""
    if not enabled():
        log.debug("%s=0: allocator and thread settings left as they are", ENV)
        return {"enabled": False}
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read by OpenMP when torch loads it
    os.environ.setdefault("OMP_NUM_THREADS", str(usable_cores()))
    if "torch" in sys.modules:  # imported before us: OpenMP has read its environment already
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    done = {"enabled": True, "keep_freed_memory": keep_freed_memory(),
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"], "threads": int(os.environ["OMP_NUM_THREADS"])}
    log.debug("fracture_demo CPU tuning (%s=0 turns it off): %s", ENV, done)
    return done

