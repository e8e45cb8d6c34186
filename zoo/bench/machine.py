"""Which machine a measurement belongs to: the processor, its cores and the instruction sets the
runtimes' fast kernels depend on, and the memory. Read from /proc (Linux), else from ``platform``."""
from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any, Dict, List, Optional

# The instruction sets int8 and fp16 speed turns on (VNNI / AMX int8 kernels, AVX-512 FP16).
ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "amx_fp16", "avx512_bf16",
       "avx512_fp16", "asimd", "sve")
GiB = 2**30


def _cpuinfo() -> List[Dict[str, str]]:
    """/proc/cpuinfo as one dict per logical processor (empty off Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    out = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip()] = value.strip()
        out.append(entry)
    return out


def _meminfo(key: str) -> Optional[int]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def total_memory() -> int:
    return _meminfo("MemTotal") or int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def available_memory() -> int:
    """What a new allocation can have without swapping (MemAvailable), or the total where unknown."""
    return _meminfo("MemAvailable") or total_memory()


def describe() -> Dict[str, Any]:
    """The machine, and an ``id`` over the facts that decide speed (the same hardware, the same id)."""
    cpus = _cpuinfo()
    first = cpus[0] if cpus else {}
    flags = set(first.get("flags", first.get("Features", "")).split())
    physical = {(c.get("physical id"), c.get("core id")) for c in cpus if "core id" in c}
    facts = {
        "cpu": first.get("model name") or platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count() or 1,
        "physical_cores": len(physical) or None,
        "isa": [f for f in ISA if f in flags],
        "memory_gib": round(total_memory() / GiB, 1),
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
    }
    key = {k: facts[k] for k in ("cpu", "logical_cores", "physical_cores", "isa", "memory_gib", "arch")}
    facts["id"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return facts


def describe_line(m: Dict[str, Any]) -> str:
    isa = ", ".join(m.get("isa") or []) or "no listed vector extensions"
    return (f"{m['cpu']}, {m['logical_cores']} logical cores, {m['memory_gib']} GiB ({isa}); "
            f"machine id {m['id']}")
