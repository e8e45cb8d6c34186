"""Source adapters, one module each; looked up by the registry's source name."""
from __future__ import annotations

import importlib

from zoo.converters.sources.base import SourceAdapter
from zoo.errors import Unavailable, UserError

# source name -> "module:class"; imported on demand so one backend never loads another's library.
ADAPTERS = {
    "torchvision": "zoo.converters.sources.torchvision:TorchvisionAdapter",
    "timm": "zoo.converters.sources.timm:TimmAdapter",
    "mmcls": "zoo.converters.sources.mmcls:MmclsAdapter",
    "ppcls": "zoo.converters.sources.ppcls:PpclsAdapter",
    "mindcv": "zoo.converters.sources.mindcv:MindcvAdapter",
}
# The packages whose versions identify an artifact built from each source (read without importing).
TOOLS = {
    "torchvision": ["torch", "torchvision", "onnx", "onnxsim", "onnxruntime"],
    "timm": ["torch", "timm", "safetensors", "onnx", "onnxsim", "onnxruntime"],
    "mmcls": ["torch", "mmpretrain", "mmengine", "mmcv-lite", "onnx", "onnxsim", "onnxruntime"],
    "ppcls": ["paddlepaddle", "paddle2onnx", "onnx", "onnxsim", "onnxruntime"],
    # MindCV runs the reference; torch exports the ONNX (MindSpore's ONNX export fails on the network)
    "mindcv": ["mindspore", "mindcv", "torch", "torchvision", "onnx", "onnxsim", "onnxruntime"],
}
# Preference when the user names no source: the reference implementation first.
PREFERENCE = ("torchvision", "timm", "mmcls", "ppcls", "mindcv")


def check_convertible(source: str) -> None:
    if source in ADAPTERS:
        return
    from zoo.registry.loader import load_registry

    known = load_registry().sources.get(source)
    why = getattr(known, "reference_only", None)
    if why:
        raise Unavailable(f"source '{source}': {why}")
    raise Unavailable(f"no converter for source '{source}'; convertible sources: {', '.join(ADAPTERS)}")


def get_adapter(source: str) -> SourceAdapter:
    check_convertible(source)
    module, cls = ADAPTERS[source].split(":")
    try:
        return getattr(importlib.import_module(module), cls)()
    except ImportError as e:
        raise UserError(f"source '{source}' needs a package that is not installed ({e.name}); "
                        f"install it with: pip install 'resnext-zoo[{source}]'") from None
