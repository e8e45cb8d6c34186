"""Free disk space, checked before a conversion writes its files.

A disk that fills up mid-write fails deep inside an exporter with a message that says nothing about
space (torch.save: "unexpected pos ..."), after minutes of work. The check turns that into one line
up front. The estimate is the most a conversion holds at once in its staging folder.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from zoo.errors import UserError

MARGIN = 256 * 2**20  # golden files, manifests, the smaller exporters' scratch


class NotEnoughDisk(UserError):
    """The folder cannot hold the job's files: free some space or write elsewhere."""

    exit_code = 1


def conversion_bytes(fp32_bytes: int, third_copy: bool) -> int:
    """Bytes a conversion holds at once: two copies of the weights (the checkpoint and the raw export,
    then the raw and the canonical export), and a third where the target writes its own weights or
    needs the source's state saved beside them."""
    return (3 if third_copy else 2) * fp32_bytes + MARGIN


def require_free(folder: Path, need: int, what: str) -> None:
    """Raise :class:`NotEnoughDisk` unless the file system holding ``folder`` has ``need`` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < need:
        raise NotEnoughDisk(
            f"not enough disk space for {what}: it needs about {_gb(need)} free in {folder}, and {_gb(free)} "
            "is free; free some space or set out_dir= to a folder on a bigger disk")


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"
