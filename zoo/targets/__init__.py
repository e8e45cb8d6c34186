"""Targets. A target is one module (a :class:`~zoo.targets.base.Target` subclass) plus one
``conf/target/<name>.yaml``, whose ``plugin:`` key names the class. This is the only place that finds
them: adding a target touches nothing else, and nothing else in the package names one.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Type

from zoo.errors import UserError
from zoo.plugin_class import load_class
from zoo.targets.base import Target


def _folder() -> Path:
    from zoo.registry.loader import conf_dir

    return conf_dir() / "target"


def target_names() -> List[str]:
    """The targets of the config folder in use (``ZOO_CONF`` may name a site copy with more)."""
    return sorted(p.stem for p in _folder().glob("*.yaml"))


@lru_cache(maxsize=64)
def _plugin_of(path: Path, mtime: float) -> str:
    from zoo.registry.loader import read_yaml

    raw = read_yaml(path)
    plugin = raw.get("plugin") if isinstance(raw, dict) else None
    if not isinstance(plugin, str) or plugin.count(":") != 1:
        raise UserError(f"{path}: give the target's class as plugin: module:Class (e.g. zoo.targets.onnx_rt:OnnxTarget)")
    return plugin


def target_class(name: str) -> Type[Target]:
    """The Target class of ``conf/target/<name>.yaml``, imported (target modules load no toolchain)."""
    path = _folder() / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown target '{name}': choose one of {', '.join(target_names())}")
    return load_class(_plugin_of(path, path.stat().st_mtime), Target, f"target '{name}' ({path})",
                      "pip install it (every extra: pip install 'resnext-zoo[all]')")


def target_classes() -> Dict[str, Type[Target]]:
    return {name: target_class(name) for name in target_names()}


def get_target(name: str) -> Target:
    return target_class(name)()
