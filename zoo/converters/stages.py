"""Time and peak memory of each conversion stage.

Peak RSS per stage comes from the kernel's high-water mark (``VmHWM``), reset at the start of every
stage through ``/proc/self/clear_refs``, so each stage reports its own peak rather than the
process's peak so far. Child processes (paddle2onnx, the MindSpore worker) are measured through
``RUSAGE_CHILDREN``: its maximum only grows, so a stage records a child figure when a child of that
stage set a new maximum. The peak the machine saw in a stage is at most parent + child.
"""
from __future__ import annotations

import ctypes
import gc
import re
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, Optional

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def peak_rss_mb() -> Optional[float]:
    """This process's peak resident set since the last reset, in MiB (None where /proc is absent)."""
    try:
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", _STATUS.read_text())
    except OSError:
        return None
    return round(int(match.group(1)) / 1024, 1) if match else None


def reset_peak_rss() -> bool:
    """Start a new high-water mark at the current RSS (Linux >= 4.0); False where not possible."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


# Freeing less than this, a full collection is not worth its cost: it walks every object the imported
# libraries made (0.1-0.2 s with torch loaded), and a model freed by reference count needs none.
COLLECT_ABOVE = 256 * 2**20


def release_memory(freed_bytes: int) -> None:
    """Hand the memory of a model just dropped back to the OS: collect garbage (a model held in a
    reference cycle) when ``freed_bytes`` is large, then trim the heap (glibc keeps freed pages
    otherwise, and a 3 GiB model freed stays in the RSS every later stage starts from)."""
    if freed_bytes >= COLLECT_ABOVE:
        gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def children_peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)  # ru_maxrss is KiB on Linux


@dataclass
class StageMeter:
    """Times each stage; with ``verbose`` also says on stderr which stage is running (long work)."""

    verbose: bool = False
    stages: Dict[str, float] = field(default_factory=dict)  # seconds
    peak_rss_mb: Dict[str, float] = field(default_factory=dict)  # this process, per stage
    child_peak_rss_mb: Dict[str, float] = field(default_factory=dict)  # a child process of the stage

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.verbose:
            print(f"[zoo] {name} ...", file=sys.stderr, flush=True)
        reset_peak_rss()
        children_before = children_peak_mb()
        t = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - t, 3)
            peak = peak_rss_mb()
            if peak is not None:
                # without a reset the high-water mark is the process's so far: still an upper bound
                self.peak_rss_mb[name] = max(self.peak_rss_mb.get(name, 0.0), peak)
            if children_peak_mb() > children_before:
                self.child_peak_rss_mb[name] = children_peak_mb()

    def memory(self) -> Dict[str, Dict[str, float]]:
        """For the manifest: per-stage peaks of this process and of the stage's child, in MiB."""
        out: Dict[str, Dict[str, float]] = {"process": dict(self.peak_rss_mb)}
        if self.child_peak_rss_mb:
            out["child"] = dict(self.child_peak_rss_mb)
        return out
