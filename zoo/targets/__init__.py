"""Targets, one module each; looked up by the name of their ``conf/target/<name>.yaml``."""
from __future__ import annotations

import importlib

from zoo.errors import UserError
from zoo.targets.base import Target

# target name -> "module:class"; imported on demand so one target never loads another's toolchain.
TARGETS = {
    "onnx": "zoo.targets.onnx_rt:OnnxTarget",
    "openvino": "zoo.targets.openvino:OpenVinoTarget",
    "mindir": "zoo.targets.mindir:MindirTarget",
    "ixrt": "zoo.targets.ixrt:IxrtTarget",
    "vacc": "zoo.targets.vacc:VaccTarget",
    "bpu": "zoo.targets.bpu:BpuTarget",
    "tensorrt": "zoo.targets.tensorrt:TensorrtTarget",
}
# The packages whose versions identify an artifact of each target (read without importing).
TOOLS = {
    "onnx": ["onnxruntime"],
    "openvino": ["openvino", "nncf"],  # nncf quantizes the int8 IR
    "mindir": ["mindspore"],
    "ixrt": ["onnxruntime", "tensorrt", "ixrt"],
    "vacc": ["onnxruntime"],
    "bpu": ["onnxruntime"],
    "tensorrt": ["onnxruntime", "tensorrt", "tensorrt-cu12"],
}

# The pyproject extra that installs what each target needs here.
EXTRAS = {"onnx": "onnx", "openvino": "openvino,onnx", "mindir": "mindspore,onnx", "ixrt": "onnx", "vacc": "onnx",
          "bpu": "onnx", "tensorrt": "onnx"}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise UserError(f"unknown target '{name}': choose one of {', '.join(TARGETS)}")
    module, cls = TARGETS[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)()
    except ImportError as e:
        raise UserError(f"target '{name}' needs a package that is not installed ({e.name}); "
                        f"install it with: pip install 'resnext-zoo[{EXTRAS[name]}]'") from None
