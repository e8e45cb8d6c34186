"""Load and validate the registry: every ``conf/model/*.yaml`` against the typed schema.

Errors name the file and the key, so a typo in a variant file is a one-line message, not a
traceback from deep inside OmegaConf.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Type, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from zoo.errors import UserError
from zoo.registry.arch_stats import arch_stats
from zoo.registry.schema import Arch, Document, Size, Source, Variant

T = TypeVar("T")

PACKAGE_CONF = Path(__file__).resolve().parent.parent / "conf"


def conf_dir() -> Path:
    """The config root: the packaged ``conf/``, or a site registry named by ``ZOO_CONF``."""
    return Path(os.environ.get("ZOO_CONF", PACKAGE_CONF)).resolve()


class Checkpoint(NamedTuple):
    """Where a checkpoint alias points: one (variant, source, tag)."""

    variant: str
    source: str
    tag: str


@dataclass(frozen=True)
class Registry:
    variants: Dict[str, Variant]
    aliases: Dict[str, str]  # alias -> canonical variant name
    sources: Dict[str, Source]
    documents: Dict[str, Document]
    root: Path
    checkpoints: Dict[str, Checkpoint] = field(default_factory=dict)  # legacy checkpoint name -> its entry
    file_digests: Dict[str, str] = field(default_factory=dict)  # variant -> digest of its file as parsed

    def as_written(self, raw: Any) -> Optional[Variant]:
        """A copy of the registry's own variant when ``raw`` (a composed ``model`` config) is its file
        unchanged, so already validated; None when anything differs (an override of ``model.*``)."""
        name = raw.get("name") if isinstance(raw, dict) else None
        if name not in self.variants or self.file_digests.get(name) != content_digest(raw):
            return None
        import copy

        return copy.deepcopy(self.variants[name])


def content_digest(raw: Any) -> str:
    """A digest of parsed YAML content: equal for equal content, however the file was formatted."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()


# Aliases may add at most this many nodes to a file once expanded. The registry's own files use no
# aliases and the largest holds about 500 nodes; OmegaConf and Hydra copy every alias out, so nine
# nested aliases of nine ("billion laughs") would be 387 million nodes and hang any command.
MAX_ALIAS_NODES = 10_000


def _children(node: yaml.Node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_expansion(root: yaml.Node, path: Path) -> None:
    """Refuse a document whose aliases add over MAX_ALIAS_NODES nodes once expanded, or refer to themselves.

    PyYAML shares an aliased node, so the document is composed cheaply; its size once expanded is
    summed over that graph, each distinct node once (iteratively: no recursion limit to hit)."""
    size: dict = {}  # id(node) -> nodes once expanded
    entered: set = set()  # the nodes on the path from the root to the one being looked at
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            entered.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            # len(size) >= the distinct nodes below: the rest is what aliases copy in (a long file is fine)
            if size[key] - len(size) > MAX_ALIAS_NODES:
                raise UserError(f"{path}: its YAML aliases expand to over {MAX_ALIAS_NODES:,} extra nodes "
                                "(nested aliases, a 'billion laughs'); write the repeated blocks out instead")
            continue
        if key in size:
            continue
        if key in entered:
            raise UserError(f"{path}:{node.start_mark.line + 1}: a YAML alias refers to a block that holds it "
                            "(a recursive alias); registry files must be plain trees")
        entered.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node))


def read_yaml(path: Path) -> Any:
    """Parse one YAML file; a syntax error becomes a one-line UserError with file and line.

    Safe tags only, and aliases are bounded (:func:`_check_expansion`) before anything expands them."""
    try:
        with open(path, encoding="utf-8") as f:
            loader = yaml.SafeLoader(f)
            try:
                node = loader.get_single_node()
                if node is None:
                    return None
                _check_expansion(node, path)
                return loader.construct_document(node)
            finally:
                loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"broken YAML in {where}: {problem}") from None
    except RecursionError:  # thousands of nested brackets: PyYAML's composer recurses per level
        raise UserError(f"broken YAML in {path}: nested too deeply; registry files are a few levels deep") from None


def typed(schema: Type[T], raw: Any, path: Path, prefix: str = "") -> T:
    """Merge ``raw`` onto the structured ``schema``; name the file and key on any mismatch."""
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of keys, found {type(raw).__name__}")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), raw)
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            keys = ", ".join(prefix + k for k in missing[:5])
            raise UserError(f"{path}: required key(s) missing: {keys}")
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or "?"
        msg = str(e).splitlines()[0]
        raise UserError(f"{path}: key '{prefix}{key}': {msg}") from None


def _check_consistency(
    path: Path, v: Variant, sources: Dict[str, Source], docs: Dict[str, Document]
) -> None:
    if v.name != path.stem:
        raise UserError(f"{path}: name '{v.name}' must match the file name '{path.stem}'")
    seen = set()
    defaults: Dict[str, int] = {}
    for i, w in enumerate(v.weights):
        where = f"{path}: weights[{i}]"
        if w.source not in sources:
            raise UserError(f"{where}: unknown source '{w.source}'; known: {', '.join(sorted(sources))}")
        if (w.source, w.tag) in seen:
            raise UserError(f"{where}: duplicate (source, tag) ({w.source}, {w.tag})")
        seen.add((w.source, w.tag))
        if not (w.url or w.hf_hub_id):
            raise UserError(f"{where}: needs a url or an hf_hub_id")
        defaults[w.source] = defaults.get(w.source, 0) + int(w.default)
        for j, p in enumerate(w.published):
            if p.provenance.doc not in docs:
                raise UserError(f"{where}.published[{j}]: unknown document '{p.provenance.doc}'")
    for src, n in defaults.items():
        if n != 1:
            raise UserError(f"{path}: source '{src}' needs exactly one weights entry with default: true, has {n}")
    for i, d in enumerate(v.deployments):
        if d.provenance.doc not in docs:
            raise UserError(f"{path}: deployments[{i}]: unknown document '{d.provenance.doc}'")
        if d.weights_source is not None and d.weights_source not in sources:
            raise UserError(f"{path}: deployments[{i}]: unknown source '{d.weights_source}'")


def size_of(arch: Arch) -> Size:
    """A variant's size, computed from its architecture (the only place ``Variant.size`` comes from)."""
    params = arch_stats(arch).params
    return Size(params=params, fp32_bytes=4 * params)


def _natural(path: Path) -> list:
    """resnext50 before resnext101: compare the digit runs of file names as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.stem)]


def load_registry(root: Path | None = None) -> Registry:
    """The validated registry under ``root`` (default: :func:`conf_dir`), loaded once per process."""
    return _load(Path(root or conf_dir()).resolve())


def registry_files(root: Path) -> List[Path]:
    """Every file the registry is read from, in load order (what a snapshot's fingerprint covers)."""
    return [root / "documents.yaml", *_source_files(root), *_model_files(root)]


def _source_files(root: Path) -> List[Path]:
    return sorted((root / "source").glob("*.yaml"))


def _model_files(root: Path) -> List[Path]:
    return sorted((root / "model").glob("*.yaml"), key=_natural)


@lru_cache(maxsize=4)
def _load(root: Path) -> Registry:
    from zoo.registry import snapshot

    try:
        saved = snapshot.path_for(snapshot.fingerprint(root, registry_files(root)))
    except OSError:  # a file vanished or cannot be read: the validating load names it
        return _validate(root)
    registry = snapshot.read(saved, root)
    if registry is None:
        registry = _validate(root)
        snapshot.write(saved, registry)
    return registry


def _validate(root: Path) -> Registry:
    docs_path = root / "documents.yaml"
    raw_docs = read_yaml(docs_path) or {}
    documents = {k: typed(Document, v, docs_path, f"{k}.") for k, v in raw_docs.items()}

    sources: Dict[str, Source] = {}
    for path in _source_files(root):
        src = typed(Source, read_yaml(path), path)
        sources[path.stem] = src

    variants: Dict[str, Variant] = {}
    aliases: Dict[str, str] = {}
    model_files = _model_files(root)
    if not model_files:
        raise UserError(f"no variant files in {root / 'model'}")
    digests: Dict[str, str] = {}
    for path in model_files:
        raw = read_yaml(path)
        if isinstance(raw, dict) and "size" in raw:
            raise UserError(f"{path}: key 'size' is computed from 'arch' when the registry loads; remove it")
        v = typed(Variant, raw, path)
        _check_consistency(path, v, sources, documents)
        v.size = size_of(v.arch)  # derived here, so it always matches the architecture
        variants[v.name] = v
        digests[v.name] = content_digest(raw)
    checkpoints: Dict[str, Checkpoint] = {}
    for v in variants.values():
        named = [(a, None) for a in v.aliases] + [(a, w) for w in v.weights for a in w.aliases]
        for a, w in named:
            if a in variants or a in aliases or a in checkpoints:
                raise UserError(f"{root / 'model' / v.name}.yaml: alias '{a}' is already taken")
            if w is None:
                aliases[a] = v.name
            else:
                checkpoints[a] = Checkpoint(v.name, w.source, w.tag)
    return Registry(variants=variants, aliases=aliases, sources=sources, documents=documents, root=root,
                    checkpoints=checkpoints, file_digests=digests)


def composed_variant(reg: Registry, raw: Any) -> Variant:
    """The variant a composed ``model`` config describes (overrides of ``model.*`` included), checked
    against the schema, with its size derived from its (possibly overridden) architecture."""
    variant = reg.as_written(raw) or typed(Variant, raw, Path(f"model={raw.get('name')}"), "model.")
    variant.size = size_of(variant.arch)
    return variant
