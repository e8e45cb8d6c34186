"""Golden outputs: seeded inputs and the source model's own outputs, stored with the artifact.

``convert golden=true`` writes ``golden.npz`` (every input set and its reference output) and
``golden.json`` (what they are: variant, source, tag, output semantics, seed, shapes, and the
npz's sha256). Later, on another machine or after a toolchain upgrade, ``check_golden`` runs the
same inputs through the artifact and compares with the stored references under the
per-precision gates, so a deployed artifact can be checked without the source framework.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np

from zoo.errors import UserError
from zoo.store import atomic_file, sha256_of, write_json

NPZ = "golden.npz"
JSON = "golden.json"
FORMAT = "zoo-golden/1"
REQUIRED_META = ("variant", "source", "tag", "output", "seed")
_RESERVED = ("format", "npz", "sets")


def _input_key(name: str) -> str:
    return f"inputs/{name}"


def _reference_key(name: str) -> str:
    return f"references/{name}"


def _describe(a: np.ndarray) -> Dict[str, Any]:
    return {"shape": list(a.shape), "dtype": str(a.dtype)}


def _write_npz_atomically(path: Path, arrays: Dict[str, np.ndarray]) -> None:
    """np.savez into a temporary file beside ``path``, then rename over it."""
    with atomic_file(path) as f:  # a file object: np.savez would append ".npz" to a name
        np.savez(f, **arrays)


def write_golden(folder: Path, inputs: Dict[str, np.ndarray], references: Dict[str, np.ndarray],
                 meta: Dict[str, Any]) -> List[Path]:
    """Store ``inputs`` and the source model's ``references`` (same set names) in ``folder``.

    ``meta`` must say at least variant, source, tag, output (logits | probs) and seed; any other
    keys are kept as they are. Returns the files written (npz first, then json)."""
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"golden meta lacks {', '.join(missing)}")
    clash = [k for k in _RESERVED if k in meta]
    if clash:
        raise ValueError(f"golden meta may not set {', '.join(clash)}")
    if set(inputs) != set(references) or not inputs:
        raise ValueError(f"input sets {sorted(inputs)} and reference sets {sorted(references)} differ")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays: Dict[str, np.ndarray] = {}
    sets: Dict[str, Any] = {}
    for name in sorted(inputs):
        x, ref = np.asarray(inputs[name]), np.asarray(references[name])
        if len(x) != len(ref):
            raise ValueError(f"set {name!r}: {len(x)} inputs but {len(ref)} reference outputs")
        arrays[_input_key(name)], arrays[_reference_key(name)] = x, ref
        sets[name] = {"input": _describe(x), "reference": _describe(ref)}
    npz = folder / NPZ
    _write_npz_atomically(npz, arrays)
    doc = {"format": FORMAT, **meta,
           "npz": {"name": NPZ, "sha256": sha256_of(npz), "size": npz.stat().st_size},
           "sets": sets,
           "note": "inputs are seeded generated data; references are the source model's own outputs"}
    write_json(folder / JSON, doc)  # after the npz: the json vouches for the npz it describes
    return [npz, folder / JSON]


def read_golden(folder: Path) -> tuple[Dict[str, Any], Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """The json, inputs and references of a golden set, after checking the npz is the one the json describes."""
    folder = Path(folder)
    npz, doc_path = folder / NPZ, folder / JSON
    if not npz.is_file() or not doc_path.is_file():
        absent = " and ".join(p.name for p in (npz, doc_path) if not p.is_file())
        raise UserError(f"no golden set in {folder} ({absent} missing): convert with golden=true to store one")
    try:
        doc = json.loads(doc_path.read_text())
        want = doc["npz"]["sha256"]
        sets = doc["sets"]
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{doc_path}: not a golden description ({e}); convert again with golden=true") from None
    blob = npz.read_bytes()  # hash and load the same bytes
    got = hashlib.sha256(blob).hexdigest()
    if got != want:
        raise UserError(f"{npz}: sha256 {got[:16]}… is not the {want[:16]}… that {JSON} records; the golden set "
                        f"was modified, convert again with golden=true")
    inputs, references = {}, {}
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        for name, desc in sets.items():
            for key, store, want_desc in ((_input_key(name), inputs, desc["input"]),
                                          (_reference_key(name), references, desc["reference"])):
                if key not in z.files or _describe(z[key]) != want_desc:
                    raise UserError(f"{npz}: {key} does not match {JSON}; convert again with golden=true")
                store[name] = z[key]
    return doc, inputs, references


def check_golden(folder: Path, run: Callable[[np.ndarray], np.ndarray], precision: str) -> Dict[str, Any]:
    """Run every stored input set through ``run`` and compare with the stored references.

    ``run`` takes one float32 batch (the whole set) and returns the artifact's outputs with the same
    semantics as the golden set's ``output`` (logits or probs). Returns per-set parity and "passed"."""
    from zoo.validators.numerics import compare, gated, set_passes

    doc, inputs, references = read_golden(folder)
    results: Dict[str, Any] = {}
    for name in sorted(inputs):
        out = np.asarray(run(inputs[name]))
        try:
            results[name] = compare(references[name], out, precision, str(doc.get("output", "logits"))).as_dict()
            results[name]["gated"] = gated(precision, name)
        except ValueError as e:  # an output of the wrong shape is a failed set, not a crash
            results[name] = {"passed": False, "error": str(e)}
    return {
        "golden": {k: doc.get(k) for k in REQUIRED_META} | {"sha256": doc["npz"]["sha256"]},
        "precision": precision,
        "sets": results,
        "passed": all(set_passes(precision, n, r) for n, r in results.items()),
    }
