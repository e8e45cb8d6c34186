"""What a conversion is asked to do, and the keys that identify its result without building it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from zoo.converters.accuracy_gate import AccuracyRequest
from zoo.converters.spec import OnnxSpec
from zoo.registry.schema import Variant, Weights
from zoo.store import artifact_key, sha256_of, tool_versions

try:
    ZOO_VERSION = metadata.version("resnext-zoo")  # the package's own version: one place to bump
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    ZOO_VERSION = "0+unknown"


@dataclass
class ConvertRequest:
    variant: Variant
    weights: Weights
    spec: OnnxSpec
    target: str
    precision: str = "fp32"
    options: Dict[str, Any] = field(default_factory=dict)  # conf/target/<target>.yaml, overrides applied
    calib_data: Optional[Path] = None  # a folder of calibration images (default: seeded generated ones)
    golden: bool = False  # store golden inputs and the source's outputs with the artifact
    keep_state: bool = False  # build the canonical model with the source's weights, for a later MindIR job
    accuracy: Optional[AccuracyRequest] = None  # int8: top-1 against fp32 on labelled data, gated by max_drop
    weights_mode: str = "pretrained"  # pretrained | random | file
    weights_file: Optional[Path] = None
    seed: int = 0
    offline: bool = False
    cache_dir: Optional[Union[Path, str]] = None  # a folder, or a store URL shared by many machines
    mirror: Optional[Path] = None  # read pretrained weights from this local mirror instead of the network
    download_timeout: float = 3600.0  # seconds for a whole download, retries included
    out_root: Path = Path("artifacts")
    force: bool = False
    strict: bool = True
    progress: bool = True
    # out_dir= a store URL (s3://...): out_root is then this machine's staging root (zoo.remote.artifacts)
    store_url: Optional[str] = None
    store_endpoint: Optional[str] = None
    lease_s: float = 900.0


@dataclass
class Result:
    manifest: Dict[str, Any]
    folder: Path  # the local folder (for a store, this machine's copy, which a cache hit may not have)
    cache_hit: bool
    location: Optional[str] = None  # the store URL of the artifact, when out_dir is one

    @property
    def where(self) -> str:
        return self.location or str(self.folder)


def artifact_folder_name(target: str, precision: str) -> str:
    """``onnx`` for the canonical fp32 model; ``<target>-<precision>`` for everything else."""
    return target if precision == "fp32" else f"{target}-{precision}"


def weights_identity(req: ConvertRequest) -> Dict[str, Any]:
    """What identifies the weights without reading them (cheap, for the cache-hit check)."""
    w = req.weights
    if req.weights_mode == "random":
        return {"mode": "random", "seed": req.seed}
    if req.weights_mode == "file":
        return {"mode": "file", "sha256": sha256_of(req.weights_file)}
    return {"mode": "pretrained", "origin": w.hf_hub_id or w.url, "sha256": w.sha256, "sha256_prefix": w.sha256_prefix}


def source_tools(source: str) -> List[str]:
    from zoo.converters.sources import tools_of

    return tools_of(source)


def all_tools(req: ConvertRequest) -> List[str]:
    from zoo.targets import target_class

    own = source_tools(req.weights.source)
    return own + [t for t in target_class(req.target).tools if t not in own]


def export_spec(spec: OnnxSpec) -> OnnxSpec:
    """The part of a target's spec the canonical export depends on: a dynamic batch makes the static
    ``batch`` irrelevant, so targets that differ only there share one canonical model."""
    from dataclasses import replace

    return replace(spec, batch=1) if spec.dynamic_batch else spec


def _checkpoint_identity(req: ConvertRequest) -> Dict[str, Any]:
    """What both keys start from: this package's version, the variant and the weights."""
    return {"zoo": ZOO_VERSION, "variant": asdict(req.variant), "weights_entry": asdict(req.weights),
            "weights": weights_identity(req)}


def canonical_key(req: ConvertRequest) -> str:
    """The validated canonical ONNX's identity: source, weights, export spec, parity seed, tool versions."""
    return artifact_key({
        **_checkpoint_identity(req),
        "spec": asdict(export_spec(req.spec)),
        "seed": req.seed,  # the parity inputs are seeded
        "tools": tool_versions(source_tools(req.weights.source)),
    })


def request_key(req: ConvertRequest) -> str:
    """The artifact's identity: the checkpoint's, the target's spec and options, calibration and tools."""
    return artifact_key({
        **_checkpoint_identity(req),
        "spec": asdict(req.spec),
        "target": req.target,
        "precision": req.precision,
        "options": req.options,
        "calib_data": _tree_identity(req.calib_data) if req.calib_data else None,
        "golden": req.golden,
        "accuracy": _accuracy_identity(req.accuracy),
        "tools": tool_versions(all_tools(req)),
    })


def _tree_identity(root: Path) -> List[Any]:
    """Names, sizes and mtimes of a calibration folder: a changed set rebuilds the int8 artifact."""
    root = Path(root)
    return sorted([str(p.relative_to(root)), p.stat().st_size, int(p.stat().st_mtime)]
                  for p in root.rglob("*") if p.is_file())


def _accuracy_identity(acc: Optional[AccuracyRequest]) -> Optional[Dict[str, Any]]:
    if acc is None:
        return None
    return {"data": _tree_identity(acc.data), "max_drop": acc.max_drop, "limit": acc.limit,
            "max_float_layers": acc.max_float_layers}
