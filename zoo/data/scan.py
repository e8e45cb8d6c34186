"""Walking a data folder, bounded in entries and depth, and saying so when it takes a while.

A wrong ``data=`` (a whole disk, ``/proc``, a folder with a link loop) would otherwise walk for minutes,
hold every path in memory and print nothing; here it ends with one line naming the bound it hit.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional, TextIO, Tuple

from zoo.errors import UserError

MAX_ENTRIES = 5_000_000  # files and folders seen in one scan; ImageNet-1k's train set is 1.28M files
MAX_DEPTH = 8            # folder levels below the data root; an ImageFolder tree needs 1, a flat set 0
NOTICE_AFTER_S = 2.0     # a scan slower than this says what it is doing, on stderr
NOTICE_EVERY_S = 10.0


class Scan:
    """One bounded scan of the folder ``root``: every walk through it counts against the same bounds."""

    def __init__(self, root: Path, max_entries: int = MAX_ENTRIES, max_depth: int = MAX_DEPTH,
                 stream: Optional[TextIO] = None) -> None:
        self.root = Path(root)
        self.max_entries, self.max_depth = max_entries, max_depth
        self.stream = stream
        self.seen = 0
        self.started = time.monotonic()
        self._next_notice = self.started + NOTICE_AFTER_S

    def _count(self) -> None:
        self.seen += 1
        if self.seen > self.max_entries:
            raise UserError(f"{self.root}: more than {self.max_entries:,} files and folders under it, the bound on "
                            f"scanning a data folder; give the folder of one image set (an ImageFolder tree, or "
                            f"images with val_label.txt / val_map.txt)")
        if self.seen % 4096 == 0 and time.monotonic() >= self._next_notice:
            self._next_notice = time.monotonic() + NOTICE_EVERY_S
            print(f"[zoo] scanning {self.root} for images: {self.seen:,} files and folders so far (stops past "
                  f"{self.max_entries:,}) ...", file=self.stream or sys.stderr, flush=True)

    def _too_deep(self, path: str) -> UserError:
        return UserError(f"{self.root}: folders nest more than {self.max_depth} levels below it ({path}), the bound "
                         f"on scanning a data folder; an image set is at most a few levels deep (the wrong folder, "
                         f"or a link loop?)")

    def entries(self, folder: str, depth: int, follow_links: bool) -> Iterator[Tuple[str, List[str], List[str]]]:
        """``os.walk``'s (folder, sub-folders, other entries) top-down from ``folder`` at ``depth`` below the
        root, each entry counted; a sub-folder past the depth bound is an error, not silently skipped."""
        try:
            with os.scandir(folder) as it:
                dirs, files = [], []
                for e in it:
                    self._count()
                    try:
                        is_dir = e.is_dir()  # os.walk's rule: a link to a folder is listed as a folder
                    except OSError:
                        is_dir = False
                    (dirs if is_dir else files).append(e.name)
        except OSError:
            return  # unreadable: skipped, as os.walk skips it
        yield folder, dirs, files
        for name in dirs:
            path = os.path.join(folder, name)
            if not follow_links and os.path.islink(path):
                continue
            if depth + 1 > self.max_depth:
                raise self._too_deep(path)
            yield from self.entries(path, depth + 1, follow_links)

    def files(self, folder: Path, depth: int, keep: Callable[[str], bool], follow_links: bool = True) -> List[Path]:
        """Files under ``folder`` whose name ``keep`` accepts, in torchvision's order: folders sorted by their
        path string, names sorted within each (``sorted(os.walk(...))``)."""
        found = [(top, sorted(n for n in names if keep(n)))
                 for top, _, names in self.entries(str(folder), depth, follow_links)]
        return [Path(top) / n for top, names in sorted(found) for n in names]

    def any_file(self, folder: Path, depth: int, keep: Callable[[str], bool], follow_links: bool = True) -> bool:
        """Whether any file under ``folder`` is one ``keep`` accepts; stops at the first."""
        return any(any(keep(n) for n in names) for _, _, names in self.entries(str(folder), depth, follow_links))
