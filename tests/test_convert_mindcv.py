"""MindCV to canonical ONNX: MindCV's own network is the reference, a torch twin carries the weights.

MindSpore runs in child processes only (the CLI, or a short script): MindSpore and Paddle clash in
one process, and other test modules load Paddle into the pytest process.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from conftest import manifest_of, run_zoo

# find_spec, not importorskip: importing mindcv would load MindSpore into this process
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mindcv") is None, reason="needs resnext-zoo[mindcv]")


def _run_python(code: str, timeout: int = 300) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env={"GLOG_v": "3", **os.environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_random_mindcv_converts_to_onnx(tmp_path):
    import torch
    import torchvision

    out = tmp_path / "out"
    proc = run_zoo("convert", "model=resnext50_32x4d", "source=mindcv", "weights=random", f"out_dir={out}",
                   "progress=false")
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout
    m = manifest_of(out, "resnext50_32x4d", "mindcv", "910v2")
    v = m["validation"]
    assert m["status"] == "passed" and m["weights"]["mode"] == "random"
    with torch.device("meta"):  # the count from another library's build of the same architecture
        tv = torchvision.models.resnext50_32x4d()
    assert v["params"]["graph"] == v["params"]["architecture"] == sum(p.numel() for p in tv.parameters())
    assert v["macs"]["graph"] == v["macs"]["architecture"] and round(v["macs"]["graph"] / 1e9, 2) == 4.23  # torchvision's _ops
    assert v["parity"]["passed"]
    for p in v["parity"]["sets"].values():
        assert p["cosine"] >= 0.99999 and p["passed"]
    assert "mindcv" in m["tools"] and "mindspore" in m["tools"]
    graph = onnx.load(out / "resnext50_32x4d" / "mindcv" / "910v2" / "onnx" / "model.onnx").graph
    pools = [n for n in graph.node if n.op_type == "MaxPool"]
    # MindCV's "same" pool on the 112x112 stem output: ceil_mode, not torchvision's symmetric padding of 1
    assert len(pools) == 1
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in pools[0].attribute}
    assert attrs.get("ceil_mode") == 1 and list(attrs.get("pads", [0, 0, 0, 0])) == [0, 0, 0, 0]


def test_same_pool_and_bn_statistics_match_mindspore():
    """The torch pool equals MindSpore's pad_mode="same" pool (negative inputs too, so the -inf padding
    shows), where torchvision's symmetric pool does not; and MindSpore's parameter count is the
    architecture's plus the BN moving statistics."""
    got = _run_python("""
import json, numpy as np, torch, mindspore as ms
import torch.nn.functional as F
ms.set_device("CPU"); ms.set_context(mode=ms.GRAPH_MODE)
from mindcv.models import create_model
from zoo.converters.sources.mindcv import SamePadMaxPool2d
from zoo.registry.arch_stats import arch_stats
from zoo.registry.loader import load_registry
rng = np.random.default_rng(0)
pool = ms.nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="same")
out = {"same": {}, "symmetric": {}}
for n in (112, 113, 8, 7):
    x = rng.standard_normal((2, 3, n, n)).astype(np.float32)
    want = pool(ms.Tensor(x)).asnumpy()
    got = SamePadMaxPool2d(3, 2, n)(torch.from_numpy(x)).numpy()
    sym = F.max_pool2d(torch.from_numpy(x), 3, 2, padding=1).numpy()
    out["same"][n] = float(np.abs(want - got).max()) if want.shape == got.shape else None
    out["symmetric"][n] = float(np.abs(want - sym).max()) if want.shape == sym.shape else None
net = create_model("resnext50_32x4d")
s = arch_stats(load_registry().variants["resnext50_32x4d"].arch)
out["mindspore_params"] = int(sum(p.size for p in net.get_parameters()))
out["trainable"] = int(sum(p.size for p in net.trainable_params()))
out["arch"] = [s.params, s.bn_stats]
print(json.dumps(out))
""")
    assert got["same"] == {"112": 0.0, "113": 0.0, "8": 0.0, "7": 0.0}
    assert got["symmetric"]["112"] > 0.1 and got["symmetric"]["8"] > 0.1  # even sizes: the pools differ
    params, bn_stats = got["arch"]
    assert got["trainable"] == params and got["mindspore_params"] == params + bn_stats
    assert round(got["mindspore_params"] / 1e6, 2) == 25.10  # MindCV's published figure, its convention


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _tensor(dims, tensor_type: str, content: bytes) -> bytes:  # MindSpore's TensorProto
    return (b"".join(_varint(1 << 3) + _varint(d) for d in dims) + _bytes_field(2, tensor_type.encode())
            + _bytes_field(3, content))


def _ckpt(*entries: tuple) -> bytes:  # Checkpoint{value: [Value{tag, tensor=2 | maptensor=3}]}
    return b"".join(_bytes_field(1, _bytes_field(1, tag.encode()) + _bytes_field(kind, body)) for tag, kind, body in entries)


def test_hostile_ckpt_is_refused_with_one_line(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"conv1.weight": Payload()}))
    proc = run_zoo("convert", "model=resnext50_32x4d", "source=mindcv", f"weights={evil}",
                   f"out_dir={tmp_path / 'out'}", "progress=false")
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to load" in lines[0] and "Traceback" not in proc.stderr
    assert not marker.exists()

    # What mindspore.load_checkpoint would take but is not plain tensors, and one file that is.
    files = {
        "lying_dims": _ckpt(("conv1.weight", 2, _tensor([1 << 40], "Float32", b"\0" * 4))),
        "string": _ckpt(("note", 2, _tensor([1], "str", "hello".encode("utf-32-le")))),
        "map_tensor": _ckpt(("table", 3, _bytes_field(1, _tensor([1], "Int32", b"\0" * 4)))),
        "plain": _ckpt(("w", 2, _tensor([2, 2], "Float32", b"\0" * 16)), ("step", 2, _tensor([0], "Int32", b"\1\0\0\0"))),
    }
    for name, data in files.items():
        (tmp_path / f"{name}.ckpt").write_bytes(data)
    got = _run_python(f"""
import json
from pathlib import Path
from zoo.converters.sources.mindspore_ckpt import read_ckpt
from zoo.errors import UserError
out = {{}}
for name in {sorted(files)!r}:
    try:
        out[name] = {{k: list(v.shape) for k, v in read_ckpt(Path({str(tmp_path)!r}) / f"{{name}}.ckpt").items()}}
    except UserError as e:
        out[name] = str(e)
print(json.dumps(out))
""")
    assert got["plain"] == {"w": [2, 2], "step": []}
    assert "bytes do not make a Float32 tensor" in got["lying_dims"]
    assert "type 'str'" in got["string"]
    assert "map tensor" in got["map_tensor"]
