"""A Paddle layer to raw ONNX, the way PaddleClas deploys it: ``paddle.jit.save`` then paddle2onnx.

PaddleClas's ``export_model`` wraps the classifier in an ``ExportModel`` that appends
``nn.Softmax(axis=-1)`` (``infer_add_softmax``, on by default) and saves an inference model with
``paddle.jit.save`` and an ``InputSpec([None, 3, H, W], 'float32')``. Paddle 3 writes the program as
PIR JSON (``<prefix>.json``; ``.pdmodel`` with the old IR) and the weights as ``<prefix>.pdiparams``.

The conversion is ``paddle2onnx.export(model_filename, params_filename, save_file=None, ...)``, which
returns the serialised ModelProto. Three things about paddle2onnx 2.1.0 shape how it is called:

* it runs in a child interpreter: its C++ core aborts the whole process on a model it cannot
  convert (an opset below what an op needs, an opset above 21), which here becomes a PaddleExportError;
* ``save_file=None`` skips its Polygraphy constant-folding pass, which would set
  ``POLYGRAPHY_AUTOINSTALL_DEPS=1`` and let Polygraphy pip-install onnx-graphsurgeon: nothing is
  downloaded;
* for PIR programs it never writes external data (``external_file`` is ignored) and fails to
  serialise a model over protobuf's 2 GiB limit. Weights that large (ResNeXt101_32x48d_wsl) are
  therefore left out of the conversion, which then references each by its Paddle parameter name,
  and attached afterwards as initializers in ``<out>.data`` beside the model.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from zoo.converters.onnx_canonical import PROTOBUF_LIMIT, ExternalDataWriter, external_data_name

# weights above this go into external data (leaves room for the graph itself under the 2 GiB limit)
EXTERNAL_WEIGHTS_ABOVE = PROTOBUF_LIMIT - 256 * 2**20


class PaddleExportError(RuntimeError):
    """``paddle.jit.save`` or paddle2onnx could not turn the layer into ONNX."""


_CONVERT = """
import sys
import paddle2onnx
program, params, out, opset, optimize = sys.argv[1:]
onnx_bytes = paddle2onnx.export(
    program, params, save_file=None, opset_version=int(opset), auto_upgrade_opset=False,
    enable_onnx_checker=bool(params), enable_optimize=optimize == "1", deploy_backend="onnxruntime",
)
if not onnx_bytes:
    sys.exit("paddle2onnx returned an empty model")
with open(out, "wb") as f:
    f.write(onnx_bytes)
"""


def _run_paddle2onnx(program: Path, params: str, out: Path, opset: int, optimize: bool) -> None:
    env = dict(os.environ, POLYGRAPHY_AUTOINSTALL_DEPS="0")
    env.pop("P2O_KEEP_TEMP_MODEL", None)
    proc = subprocess.run(
        [sys.executable, "-c", _CONVERT, str(program), params, str(out), str(opset), "1" if optimize else "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env,
    )
    if proc.returncode == 0 and out.is_file():
        return
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    said = [line for line in lines if "[ERROR]" in line or "Please set" in line]  # paddle2onnx's own diagnosis
    if proc.returncode > 0 and lines:
        said.append(lines[-1])  # a Python exception's last line
    how = f"exit status {proc.returncode}" if proc.returncode >= 0 else f"killed by signal {-proc.returncode}"
    detail = " | ".join(dict.fromkeys(said or lines[-3:])) or "no output"
    raise PaddleExportError(f"paddle2onnx could not convert the model to opset {opset} ({how}): {detail}")


def _attach_weights(skeleton: Path, out_path: Path, layer: Any) -> None:
    """Give a weightless conversion its weights, by Paddle parameter name, as external initializers."""
    import onnx

    model = onnx.load(str(skeleton))
    graph = model.graph
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    known |= {o for n in graph.node for o in n.output}
    wanted = {i for n in graph.node for i in n.input if i and i not in known}
    weights = {v.name: v for v in layer.state_dict().values()}
    missing = sorted(wanted - set(weights))
    if missing:
        raise PaddleExportError(f"the converted graph needs tensors the layer does not have: {', '.join(missing[:4])}")
    data = out_path.with_name(external_data_name(out_path))
    writer = ExternalDataWriter(data)
    try:
        for name in sorted(wanted):  # streamed: one tensor's numpy copy at a time, never the whole model
            graph.initializer.append(writer.tensor(weights[name].numpy(), name))
    finally:
        writer.close()
    onnx.save_model(model, str(out_path))


def _export_model(layer: Any, append_softmax: bool) -> Any:
    from paddle import nn

    class ExportModel(nn.Layer):
        """The classifier, then softmax over the last axis when asked (PaddleClas's ``ExportModel``)."""

        def __init__(self, base_model, softmax):
            super().__init__()
            self.base_model = base_model
            self.out_act = nn.Softmax(axis=-1) if softmax else None

        def forward(self, x):
            x = self.base_model(x)
            if self.out_act is not None:
                x = self.out_act(x)
            return x

    return ExportModel(layer, append_softmax)


def _saved_program(prefix: Path) -> Path:
    for suffix in (".json", ".pdmodel"):  # PIR (Paddle 3 default), then the old IR
        if prefix.with_name(prefix.name + suffix).is_file():
            return prefix.with_name(prefix.name + suffix)
    found = ", ".join(sorted(p.name for p in prefix.parent.iterdir())) or "nothing"
    raise PaddleExportError(f"paddle.jit.save wrote no program next to {prefix} (found: {found})")


def paddle_to_onnx(
    layer: Any,
    out_path: Path,
    opset: int,
    dynamic_batch: bool,
    batch: int = 1,
    size: int = 224,
    input_name: str = "input",
    append_softmax: bool = True,
) -> Path:
    """Export ``layer`` (NCHW float32 images of ``size`` x ``size``) to ONNX at ``out_path``.

    The batch dimension is dynamic when ``dynamic_batch``, else fixed to ``batch``; the opset is
    exactly ``opset`` (paddle2onnx is not allowed to raise it). The layer is put in eval mode.
    """
    import paddle

    if importlib.util.find_spec("paddle2onnx") is None:
        raise PaddleExportError("paddle2onnx is not installed (pip install 'resnext-zoo[ppcls]')")
    out_path = Path(out_path)
    model = _export_model(layer, append_softmax)
    model.eval()
    spec = paddle.static.InputSpec([None if dynamic_batch else batch, 3, size, size], "float32", name=input_name)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Scratch beside the output, not in /tmp: the saved params are as big as the model, and the
    # caller's free-space check covers the output's disk.
    with tempfile.TemporaryDirectory(prefix=".zoo-paddle-export-", dir=out_path.parent) as tmp:
        prefix = Path(tmp) / "inference"
        try:
            paddle.jit.save(model, str(prefix), input_spec=[spec])
        except Exception as e:
            raise PaddleExportError(f"paddle.jit.save failed for {type(layer).__name__}: {type(e).__name__}: {e}") from e
        program = _saved_program(prefix)
        params = prefix.with_name(prefix.name + ".pdiparams")
        if not params.is_file():
            raise PaddleExportError(f"paddle.jit.save wrote {program.name} but no {params.name}")
        onnx_tmp = Path(tmp) / "model.onnx"
        if params.stat().st_size <= EXTERNAL_WEIGHTS_ABOVE:
            _run_paddle2onnx(program, str(params), onnx_tmp, opset, optimize=True)
            shutil.move(str(onnx_tmp), str(out_path))
            out_path.with_name(external_data_name(out_path)).unlink(missing_ok=True)  # a stale one
        else:
            params.unlink()  # not needed, and it is as big as the model
            _run_paddle2onnx(program, "", onnx_tmp, opset, optimize=False)
            _attach_weights(onnx_tmp, out_path, model)
    return out_path
