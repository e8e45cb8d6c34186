"""The root config's schema: every key of ``conf/config.yaml`` with its type and its bounds.

Hydra merges ``conf/config.yaml`` onto :class:`ZooConfig` (its defaults list names ``_zoo_root``), so a
key there that is not declared here, or a value of the wrong type, fails at composition. A command
line such as ``seed=abc`` or ``force=maybe`` then fails before any work, in one line
(``zoo.config.check``), and ``force=no`` is a real ``False``, not a non-empty string.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, List, Optional

from omegaconf import MISSING

from zoo.config import bounds
from zoo.errors import UserError

SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit


def _key(default: Any, help: str) -> Any:
    """A field whose ``help`` says what it takes: the bound's message and the type error's hint."""
    return field(default=default, metadata={"help": help})


@dataclass
class StoreOptions:
    """``out_dir`` / ``cache_dir`` as object storage (s3://...): zoo.remote."""

    endpoint_url: Optional[str] = None  # an S3-compatible server; else AWS_ENDPOINT_URL, else the provider's
    lease_s: float = field(default=900.0, metadata={"help": "give the seconds a build's lease lasts unrenewed (> 0)"})

    def __post_init__(self) -> None:
        bounds.above("store.lease_s", self.lease_s, "give the seconds a build's lease lasts unrenewed (> 0)")


@dataclass
class ZooConfig:
    command: str = MISSING
    filter: Optional[str] = None
    tag: Optional[str] = None
    format: str = "table"
    # convert
    weights: str = "pretrained"
    seed: int = _key(0, "give an integer from 0 to 4294967295 (e.g. seed=0)")
    offline: bool = False
    cache_dir: Optional[str] = None
    download_timeout: float = _key(3600.0, "give the seconds a whole download may take (> 0)")
    mirror: Optional[str] = None
    mirror_out: Optional[str] = None
    out_dir: str = "artifacts"
    force: bool = False
    strict: bool = True
    progress: bool = True
    memory_budget_gb: Optional[float] = _key(None, "give the GB conversions here may hold (> 0)")
    memory_ledger: Optional[str] = None
    calib_data: Optional[str] = None
    golden: bool = False
    keep_state: bool = False
    max_drop: Optional[float] = _key(None, "give the largest top-1 drop allowed against fp32, in percentage points (a number >= 0, e.g. max_drop=0.5)")
    max_float_layers: Optional[int] = _key(None, "give how many layers may go back to float (an integer >= 1)")
    dry_run: bool = False
    # validate / calib
    data: Optional[str] = None
    labels: Optional[str] = None
    source_model: bool = False
    limit: Optional[int] = _key(None, "give a positive number of images (e.g. limit=300)")
    tolerance: Optional[float] = _key(None, "give a top-1 tolerance in percentage points (>= 0)")
    n: Optional[int] = _key(None, "give a positive number of calibration images (e.g. n=1000)")
    eval_batch: int = _key(32, "give a positive number of images per batch")
    workers: int = _key(2, "give a number of decoding processes (0: decode in this one)")
    # results / gc / report
    apply: bool = False
    stale_hours: float = _key(2.0, "expected a number of hours, 0 or more")
    report_file: Optional[str] = None
    # bench
    batches: List[int] = field(default_factory=lambda: [1, 8, 32],
                               metadata={"help": "give batch sizes of 1 or more (batches=1,8,32)"})
    threads: Optional[int] = _key(None, "give a number of threads, 1 or more (null: every core here)")
    stability: float = _key(5.0, "give the percent three windows may differ by (> 0, e.g. stability=5)")
    window: float = _key(1.0, "give the seconds of one measuring window (> 0)")
    max_seconds: float = _key(30.0, "give the seconds one batch size may be measured for at most (> 0)")
    pick: Optional[str] = None
    store: StoreOptions = field(default_factory=StoreOptions)
    # config groups: the registry's own schema checks model and source (zoo.registry.schema); the
    # target and hub options have theirs (each Target.options, zoo.config.hub)
    model: Any = None
    source: Any = None
    target: Any = None
    precision: Any = None
    hub: Any = None
    defaults: Any = field(default_factory=list)  # Hydra's own key in config.yaml

    def __post_init__(self) -> None:
        from zoo.render import check_format

        check_format(self.format)
        bounds.within("seed", self.seed, 0, SEED_MAX, _help("seed"))
        if not self.weights:
            raise UserError("weights=: give pretrained, random or the path of a checkpoint file")
        if not self.out_dir:
            raise UserError("out_dir=: give a folder (default: artifacts)")
        for key in ("download_timeout", "memory_budget_gb"):
            bounds.above(key, getattr(self, key), _help(key))
        for key in ("stability", "window", "max_seconds"):
            bounds.above(key, getattr(self, key), _help(key))
        if not self.batches:
            raise UserError(f"batches=[]: {_help('batches')}")
        for b in self.batches:
            bounds.at_least("batches", b, 1, _help("batches"))
        if self.pick is not None:
            from zoo.bench.pick import parse

            parse(self.pick)
        for key, minimum in (("threads", 1), ("max_drop", 0), ("max_float_layers", 1), ("limit", 1), ("tolerance", 0), ("n", 1),
                             ("eval_batch", 1), ("workers", 0), ("stale_hours", 0)):
            bounds.at_least(key, getattr(self, key), minimum, _help(key))


def _help(key: str) -> str:
    return next(str(f.metadata["help"]) for f in fields(ZooConfig) if f.name == key)
