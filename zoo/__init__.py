"""resnext-zoo: every published ResNeXt checkpoint in one registry, converted and validated for each target.

The Python API (``zoo.api``) is loaded on first use, so ``import zoo`` stays cheap::

    import zoo
    art = zoo.convert("resnext50_32x4d", target="onnx", weights="random")
"""
from __future__ import annotations

from typing import Any

_API = ("list_checkpoints", "lookup", "convert", "validate", "compose", "Artifact", "Manifest", "ValidationReport")
__all__ = [*_API, "UserError", "ValidationFailed"]


def __getattr__(name: str) -> Any:
    if name in _API:
        from zoo import api

        return getattr(api, name)
    if name == "UserError":
        from zoo.errors import UserError

        return UserError
    if name == "ValidationFailed":
        from zoo.build.pipeline import ValidationFailed

        return ValidationFailed
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
