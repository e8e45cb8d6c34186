"""Memory admission for conversions: jobs on one machine take turns so they do not swap or get OOM-killed.

Before its heavy part a conversion reserves its estimated peak memory in a ledger that every job on
the machine shares (a JSON file guarded by a file lock), whichever launcher started it: the basic
one, joblib, Ray, or several shells. While the reservations already there plus its own would
exceed the budget it waits, saying once on stderr what it waits for. A job whose estimate alone is
over the budget waits until the ledger is empty and then runs alone, instead of never starting.
Each reservation carries its process id (and start time, where /proc has it), so the reservation
of a job that died, even by SIGKILL, is dropped by the next job that reads the ledger.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Optional

from filelock import FileLock

from zoo.errors import UserError
from zoo.store import write_atomic

# Peak resident memory of a conversion = the frameworks themselves + a factor x its fp32 weight bytes,
# in two regimes, each target's own (Target.memory_factor, Target.streamed_memory_factor; measured
# peaks, rounded up; each stage's peak is in the manifest). Under protobuf's 2 GiB limit the whole
# model is held several times at once: torch's exporter (Conv+BN folding), onnxsim (a serialised copy
# and its own) and ONNX Runtime at its full optimisation level in validation: 5.7x on resnext101_32x16d
# and 5.9x on 32x32d (the validate stage). Over it (the WSL 32x48d) the weights are streamed, onnxsim
# is skipped and validation runs at the basic level.
BASE_BYTES = 2**30  # torch / paddle / ONNX Runtime loaded, whatever the model (about 1 GiB measured)

BUDGET_FRACTION = 0.85  # of physical memory, when memory_budget_gb is not given: room for the OS and caches
GiB = 2**30


def estimate_peak_bytes(fp32_weight_bytes: int, target: str) -> int:
    """Estimated peak memory of converting a model with these weights to ``target``."""
    from zoo.converters.onnx_canonical import PROTOBUF_LIMIT
    from zoo.targets import target_class

    cls = target_class(target)
    factor = cls.streamed_memory_factor if fp32_weight_bytes >= PROTOBUF_LIMIT else cls.memory_factor
    return BASE_BYTES + int(fp32_weight_bytes * factor)


def physical_memory_bytes() -> int:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def budget_bytes(gb: Optional[float] = None) -> int:
    """``gb`` GiB, or ``BUDGET_FRACTION`` of physical memory when ``gb`` is None."""
    if gb is None:
        return int(physical_memory_bytes() * BUDGET_FRACTION)
    try:
        value = float(gb)
    except (TypeError, ValueError):
        raise UserError(f"memory_budget_gb={gb}: give a number of GiB, or null for 85% of physical memory") from None
    if value <= 0:
        raise UserError(f"memory_budget_gb={gb}: must be above 0 (null: 85% of physical memory)")
    return int(value * GiB)


def default_ledger(cache_dir: Path) -> Path:
    """One ledger per machine: process ids only mean something on the host that made them."""
    return Path(cache_dir) / "memory" / f"ledger-{socket.gethostname()}.json"


def _start_time(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _alive(entry: Dict[str, Any]) -> bool:
    pid = int(entry.get("pid", 0))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2] == "Z":
            return False  # exited, not yet reaped by its parent
    except (OSError, IndexError):
        pass
    started = entry.get("started")
    return started is None or started == _start_time(pid)


def _read(path: Path) -> List[Dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []  # no ledger yet; a damaged one holds nothing anyone can rely on
    entries = data.get("reservations", []) if isinstance(data, dict) else []
    return [e for e in entries if isinstance(e, dict) and "bytes" in e]


def _write(path: Path, entries: List[Dict[str, Any]]) -> None:
    write_atomic(path, json.dumps({"reservations": entries}, indent=1) + "\n")


def reservations(ledger: Path) -> List[Dict[str, Any]]:
    """The live reservations in ``ledger`` (those of dead processes left out)."""
    return [e for e in _read(Path(ledger)) if _alive(e)]


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB"


@contextmanager
def reserved(nbytes: int, budget: int, ledger: Path, label: str, poll_s: float = 1.0,
             stream: Optional[IO[str]] = None) -> Iterator[None]:
    """Hold a reservation of ``nbytes`` in ``ledger`` for the duration of the ``with`` block.

    Waits while live reservations plus ``nbytes`` exceed ``budget``; with ``nbytes`` over the whole
    budget, waits for an empty ledger and runs alone.
    """
    ledger = Path(ledger)
    ledger.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(ledger) + ".lock")
    entry = {"id": uuid.uuid4().hex, "pid": os.getpid(), "started": _start_time(os.getpid()),
             "bytes": int(nbytes), "label": label, "since": time.time()}
    said = False
    while True:
        with lock:
            live = reservations(ledger)
            held = sum(int(e["bytes"]) for e in live)
            alone = nbytes > budget
            if not live or (not alone and held + nbytes <= budget):
                _write(ledger, live + [entry])
                break
        if not said:
            others = ", ".join(f"{e.get('label', '?')} (pid {e['pid']})" for e in live)
            why = (f"it needs {_gib(nbytes)}, more than the whole budget of {_gib(budget)}, so it runs alone"
                   if alone else f"it needs {_gib(nbytes)}; {_gib(held)} of the {_gib(budget)} budget is held")
            print(f"waiting for memory: {label}: {why}; waiting for {len(live)} job(s): {others}",
                  file=stream or sys.stderr, flush=True)
            said = True
        time.sleep(poll_s)
    try:
        yield
    finally:
        with lock:
            _write(ledger, [e for e in reservations(ledger) if e.get("id") != entry["id"]])
