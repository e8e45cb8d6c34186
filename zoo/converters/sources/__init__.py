"""Source adapters. A source is one module here plus one ``conf/source/<name>.yaml``, whose ``adapter:``
names the class and whose ``tools``, ``extra`` and ``preference`` say the rest; this is the only place
that looks them up, so nothing else in the package names a source.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Type

from zoo.converters.sources.base import SourceAdapter
from zoo.errors import Unavailable
from zoo.plugin_class import load_class
from zoo.registry.schema import Source, Variant, Weights


def _sources() -> dict:
    from zoo.registry.loader import load_registry

    return load_registry().sources


def convertible() -> List[str]:
    """The sources with a converter, in preference order."""
    found = [s for s in _sources().values() if s.adapter]
    return [s.name for s in sorted(found, key=lambda s: (s.preference, s.name))]


def source_of(name: str) -> Source:
    check_convertible(name)
    return _sources()[name]


def check_convertible(source: str) -> None:
    known = _sources().get(source)
    if known is not None and known.adapter:
        return
    why = getattr(known, "reference_only", None)
    if why:
        raise Unavailable(f"source '{source}': {why}")
    raise Unavailable(f"no converter for source '{source}'; convertible sources: {', '.join(convertible())}")


def tools_of(source: str) -> List[str]:
    """The packages whose versions identify an artifact built from ``source`` (read without importing)."""
    return list(source_of(source).tools)


def default_source(variant: Variant, source: Optional[str] = None) -> str:
    """``source`` when given, else the variant's most preferred convertible source (else its first)."""
    if source is not None:
        return source
    have = {w.source for w in variant.weights}
    return next((s for s in convertible() if s in have), variant.weights[0].source)


def adapter_class(source: str) -> Type[SourceAdapter]:
    spec = source_of(source)
    return load_class(str(spec.adapter), SourceAdapter, f"source '{source}' (conf/source/{source}.yaml)",
                      f"install it with: pip install 'resnext-zoo[{spec.extra or source}]'")


def native_network(weights: Weights, framework: str) -> Optional[Dict[str, str]]:
    """The source's own network in ``framework`` for these weights (SourceAdapter.native_network)."""
    return adapter_class(weights.source).native_network(framework, weights)


def get_adapter(source: str) -> SourceAdapter:
    return adapter_class(source)()
