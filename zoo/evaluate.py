"""Top-1 / top-5 accuracy of any classifier over labelled images, streamed in bounded memory.

Worker processes decode and preprocess (``zoo.preprocess.preprocess``, the registry's own
recipe); the parent batches their arrays in dataset order into float32 arrays for ``run``, which
may be any backend (PyTorch, ONNX Runtime, a vendor runtime) returning [N, classes] scores.
Only a bounded window of images is ever in flight. Images that cannot be decoded are skipped
and counted by reason; they never stop the run.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from zoo.data.dataset import Sample
from zoo.data.decode import load_rgb
from zoo.preprocess import preprocess
from zoo.registry.schema import InputSpec

CHUNK = 8  # images per worker task: few enough to keep memory small, enough to amortise the IPC
CHUNKS_IN_FLIGHT_PER_WORKER = 3
EXAMPLES_PER_REASON = 5
CANNOT_PREPROCESS = "cannot preprocess"

Prepared = Tuple[Optional[np.ndarray], Optional[str]]  # (array, None) or (None, reason)


@dataclass
class EvalResult:
    n_requested: int
    n_evaluated: int
    top1: Optional[float]  # percent; None when nothing was evaluated
    top5: Optional[float]
    skipped: Dict[str, int]  # reason -> count
    seconds: float
    correct1: int = 0
    correct5: int = 0
    images_per_second: float = 0.0
    skipped_examples: Dict[str, List[str]] = field(default_factory=dict)  # reason -> first few paths
    predictions: List[int] = field(default_factory=list)  # top-1 class per sample, -1 where skipped

    def as_dict(self) -> Dict[str, Any]:
        """Everything but the per-sample predictions, for a JSON report."""
        out = asdict(self)
        out.pop("predictions")
        return out


def evaluate(
    samples: Sequence[Sample],
    spec: InputSpec,
    run: Callable[[np.ndarray], np.ndarray],
    batch: int = 32,
    workers: int = 2,
    progress: bool = True,
) -> EvalResult:
    """Score ``run`` on ``samples``: top-1/top-5 over the images that decode, the rest counted.

    ``workers`` > 0 starts that many spawned processes, so a script calling this needs the usual
    ``if __name__ == "__main__":`` guard; ``workers=0`` decodes in this process.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    start = time.perf_counter()
    tally = _Tally(len(samples))
    stream = contextlib.closing(_prepared(samples, spec, workers))  # closed at once if ``run`` raises
    with stream as prepared, _progress_bar(len(samples), progress) as advance:
        indices: List[int] = []
        arrays: List[np.ndarray] = []
        for i, (array, reason) in enumerate(prepared):
            if array is None:
                tally.skip(i, samples[i].path, reason or "unknown")
            else:
                indices.append(i)
                arrays.append(array)
            if len(arrays) == batch:
                tally.score(indices, samples, run(np.stack(arrays)))
                indices, arrays = [], []
            advance(tally.running_top1())
        if arrays:
            tally.score(indices, samples, run(np.stack(arrays)))
            advance(tally.running_top1(), 0)
    return tally.result(time.perf_counter() - start)


class _Tally:
    """Running counts; holds one int per sample, never an image."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.correct1 = 0
        self.correct5 = 0
        self.evaluated = 0
        self.skipped: Counter = Counter()
        self.examples: Dict[str, List[str]] = {}
        self.predictions = [-1] * n

    def skip(self, i: int, path: Path, reason: str) -> None:
        self.skipped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append(str(path))

    def score(self, indices: List[int], samples: Sequence[Sample], scores: Any) -> None:
        scores = np.asarray(scores)
        if scores.ndim != 2 or scores.shape[0] != len(indices):
            raise ValueError(f"run returned scores of shape {scores.shape}; expected ({len(indices)}, classes)")
        labels = np.asarray([samples[i].label for i in indices])
        k = min(5, scores.shape[1])
        # argsort works the same for logits and probabilities; stable, so ties resolve by class index.
        topk = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        self.correct1 += int((topk[:, 0] == labels).sum())
        self.correct5 += int((topk == labels[:, None]).any(axis=1).sum())
        self.evaluated += len(indices)
        for i, pred in zip(indices, topk[:, 0]):
            self.predictions[i] = int(pred)

    def running_top1(self) -> Optional[float]:
        return 100.0 * self.correct1 / self.evaluated if self.evaluated else None

    def result(self, seconds: float) -> EvalResult:
        pct = (lambda c: 100.0 * c / self.evaluated) if self.evaluated else (lambda c: None)
        return EvalResult(
            n_requested=self.n,
            n_evaluated=self.evaluated,
            top1=pct(self.correct1),
            top5=pct(self.correct5),
            skipped=dict(self.skipped),
            seconds=seconds,
            correct1=self.correct1,
            correct5=self.correct5,
            images_per_second=self.evaluated / seconds if seconds > 0 else 0.0,
            skipped_examples=self.examples,
            predictions=self.predictions,
        )


def prepare_one(path: Path, spec: InputSpec) -> Prepared:
    """Decode and preprocess one image file; a failure is a reason, never an exception."""
    img, reason = load_rgb(path)
    if img is None:
        return None, reason
    try:
        return preprocess(img, spec), None
    except (ValueError, OSError, MemoryError):
        return None, CANNOT_PREPROCESS


_WORKER_SPEC: Optional[InputSpec] = None


def _init_worker(spec: InputSpec) -> None:
    global _WORKER_SPEC
    _WORKER_SPEC = spec


def _prepare_chunk(paths: List[Path]) -> List[Prepared]:
    assert _WORKER_SPEC is not None, "worker started without _init_worker"
    return [prepare_one(p, _WORKER_SPEC) for p in paths]


def _prepared(samples: Sequence[Sample], spec: InputSpec, workers: int) -> Iterator[Prepared]:
    """Prepared arrays in sample order: in-process with ``workers=0``, else from a process pool."""
    paths = [s.path for s in samples]
    chunks = iter([paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)])
    if workers <= 0:
        for chunk in chunks:
            yield from (prepare_one(p, spec) for p in chunk)
        return
    # spawn, not fork: the parent may hold a threaded runtime (torch, ORT) that fork would copy mid-state.
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(spec,))
    try:
        # A sliding window of futures keeps memory bounded however slow ``run`` is.
        pending = deque(pool.submit(_prepare_chunk, c) for c in islice(chunks, workers * CHUNKS_IN_FLIGHT_PER_WORKER))
        while pending:
            done = pending.popleft().result()
            nxt = next(chunks, None)
            if nxt is not None:
                pending.append(pool.submit(_prepare_chunk, nxt))
            yield from done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool) -> Iterator[Callable[..., None]]:
    """A rich bar on stderr with the running top-1; yields ``advance(top1, steps=1)``."""
    if not enabled:
        yield lambda top1, steps=1: None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = (
        TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TextColumn("top-1 {task.fields[top1]}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("evaluate", total=total, top1="-")

        def advance(top1: Optional[float], steps: int = 1) -> None:
            bar.update(task, advance=steps, top1="-" if top1 is None else f"{top1:.2f}%")

        yield advance
