"""The MindSpore side of the ``mindir`` target, run in its own process.

MindSpore and Paddle bundle clashing oneDNN symbols, and the pipeline may already hold Paddle, so
everything that imports MindSpore runs here: ``python -m zoo.targets.mindir_worker export|run|shapes REQUEST.json``.
A request is a JSON object (paths and settings); the worker writes a JSON report to ``request["report"]``:
``{"ok": true, ...facts}`` or ``{"ok": false, "kind": "state", "error": ...}`` for weights that do not fit.
Anything else (a crash, a MindSpore error) leaves a traceback on stderr and a non-zero exit status.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

EXIT_STATE_MISMATCH = 3
# request keys that hold paths; relative ones are taken from the request file's folder (a kit's export.json)
PATH_KEYS = ("state", "out", "report", "model", "input", "output", "parity_input", "parity_output")


def _write(path: str, report: Dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(report, indent=1))


def setup_cpu() -> Any:
    import mindspore as ms

    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    return ms


def mindir_input_shapes(path: Path) -> List[List[int]]:
    """Input dims stored in the MindIR protobuf (-1 marks a dynamic dimension)."""
    from mindspore.train import mind_ir_pb2

    model = mind_ir_pb2.ModelProto()
    model.ParseFromString(Path(path).read_bytes())
    return [list(t.dims) for value in model.graph.input for t in value.tensor]


def written_files(out: Path) -> tuple[str, List[str]]:
    """The graph file and every file of the export, relative to ``out``'s folder.

    Above 1 GiB of parameters MindSpore writes ``<stem>_graph.mindir`` plus ``<stem>_variables/data_N``
    instead of one ``<stem>.mindir``; ``mindspore.load`` of the graph file finds the data beside it.
    """
    split = out.with_name(f"{out.stem}_graph.mindir")
    primary = out if out.exists() else split
    if not primary.exists():
        raise FileNotFoundError(f"mindspore.export wrote neither {out.name} nor {split.name}")
    data = out.with_name(f"{out.stem}_variables")
    files = [primary, *(sorted(p for p in data.rglob("*") if p.is_file()) if data.is_dir() else [])]
    return primary.name, [str(f.relative_to(out.parent)) for f in files]


def _function(path: str) -> Any:
    """``module:function``, imported."""
    import importlib

    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def export(req: Dict[str, Any]) -> int:
    """Build the net, map the canonical weights onto it, export MindIR, report what was written."""
    ms = setup_cpu()
    from zoo.targets.mindspore_net import ResNeXt, canonical_name, load_state, state_mismatch

    native = req.get("native")
    if native:  # the source's own MindSpore network (SourceAdapter.native_network), not one rebuilt from the spec
        if req["softmax"]:
            raise ValueError("the source's own networks end in logits; a softmax head is not exported for them")
        factory, name_of = _function(native["factory"]), _function(native["names"])
        net = factory(native["model"], num_classes=int(req["arch"]["num_classes"]))
    else:
        net, name_of = ResNeXt(req["arch"], softmax=bool(req["softmax"])), canonical_name
    net.set_train(False)
    with np.load(req["state"]) as npz:
        state = {k: npz[k] for k in npz.files}
    problems = state_mismatch(net, state, name_of=name_of)
    if problems:
        _write(req["report"], {"ok": False, "kind": "state", "error": "; ".join(problems)})
        return EXIT_STATE_MISMATCH
    mapped = load_state(net, state, name_of)
    size = int(req["size"])
    batch: Optional[int] = req["batch"]  # None: dynamic batch
    sample = ms.Tensor(shape=[None, 3, size, size], dtype=ms.float32) if batch is None \
        else ms.Tensor(np.zeros((batch, 3, size, size), np.float32))
    out = Path(req["out"])
    started = time.perf_counter()
    ms.export(net, sample, file_name=str(out.with_suffix("")), file_format="MINDIR")
    primary, files = written_files(out)
    report = {
        "ok": True, "mindspore": ms.__version__, "mapped": mapped, "state_keys": len(state),
        "primary": primary, "files": files, "input_shapes": mindir_input_shapes(out.parent / primary),
        "parameters": int(sum(int(np.prod(p.shape)) for p in net.get_parameters())),
        "seconds": {"export": round(time.perf_counter() - started, 3)},
    }
    if req.get("parity_input"):
        # The parity inputs through the MindIR just written, loaded back from its file: in this process,
        # so a conversion starts MindSpore once (its import and start cost more than the export).
        started = time.perf_counter()
        report["parity_shape"] = _run_file(ms, out.parent / primary, req["parity_input"], req["parity_output"], batch)
        report["seconds"]["parity"] = round(time.perf_counter() - started, 3)
    _write(req["report"], report)
    return 0


def _run_file(ms: Any, model: Path, src: str, dst: str, batch: Optional[int]) -> List[int]:
    """Load a MindIR into a GraphCell and run the inputs in ``src`` (in chunks of a static batch, padded)."""
    from mindspore import nn

    from zoo.targets.base import run_static

    graph = nn.GraphCell(ms.load(str(model)))
    x = np.load(src).astype(np.float32, copy=False)
    y = run_static(lambda chunk: graph(ms.Tensor(np.ascontiguousarray(chunk))).asnumpy(), x, batch)
    np.save(dst, y)
    return list(y.shape)


def run(req: Dict[str, Any]) -> int:
    """Load the MindIR into a GraphCell and run the batch (in chunks of a static batch, padded)."""
    ms = setup_cpu()
    shape = _run_file(ms, Path(req["model"]), req["input"], req["output"], req["batch"])
    _write(req["report"], {"ok": True, "shape": shape})
    return 0


def shapes(req: Dict[str, Any]) -> int:
    """The canonical keys and shapes each named arch's network expects (to check widths against a source)."""
    setup_cpu()
    from zoo.targets.mindspore_net import ResNeXt, expected_shapes

    found = {name: {k: list(v) for k, v in expected_shapes(ResNeXt(arch)).items()}
             for name, arch in req["archs"].items()}
    _write(req["report"], {"ok": True, "shapes": found})
    return 0


COMMANDS = {"export": export, "run": run, "shapes": shapes}


def main(argv: List[str]) -> int:
    if len(argv) != 2 or argv[0] not in COMMANDS:
        print(f"usage: python -m zoo.targets.mindir_worker {{{'|'.join(COMMANDS)}}} REQUEST.json", file=sys.stderr)
        return 2
    request_file = Path(argv[1])
    req = json.loads(request_file.read_text())
    for key in PATH_KEYS:
        if key in req:
            req[key] = str(request_file.parent / req[key])  # an absolute path stays as it is
    return COMMANDS[argv[0]](req)


if __name__ == "__main__":
    from zoo.fast_exit import run_and_exit

    run_and_exit(lambda: main(sys.argv[1:]))  # the report is written: skip MindSpore's teardown
