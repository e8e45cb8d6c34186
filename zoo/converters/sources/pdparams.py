"""PaddlePaddle ``.pdparams`` checkpoints, read without running anything they contain.

A ``.pdparams`` file is a plain pickle (protocol 2-4). ``paddle.save(layer.state_dict(), path)``
(Paddle 2.x and 3.x, dygraph) writes a dict: structured name -> ``numpy.ndarray``, plus two
bookkeeping entries:

* ``"StructuredToParameterName@@"``: structured name -> Paddle parameter name
  (``{"bb_0_0.conv0._conv.weight": "res2a_branch2a_weights", ...}``);
* ``"UnpackBigParamInfor@@"`` (protocol 2/3 only): tensors over 1 GiB are split into
  ``<key>@@.<i>`` slices, rejoined on load.

Arrays are pickled by numpy's own reducer: ``numpy.core.multiarray._reconstruct`` (numpy 1.x files;
``numpy._core.multiarray`` under numpy 2), ``numpy.ndarray`` and ``numpy.dtype``, with the raw bytes
as ``_codecs.encode(str, 'latin1')`` under protocol 2. Objects pickled outside a state dict hold
each tensor as a ``(name, ndarray)`` tuple (Paddle >= 2.1). ``paddle.load`` unpickles all of this
with the stock unpickler, so a crafted file can run any callable; ``load_pdparams`` resolves only the
globals above and refuses any other before it can be called.
"""
from __future__ import annotations

import codecs
import collections
import pickle
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from zoo.converters.sources.base import check_fit, shapes_of
from zoo.errors import UserError

NAME_TABLE_KEY = "StructuredToParameterName@@"
SPLIT_INFO_KEY = "UnpackBigParamInfor@@"  # sic, Paddle's spelling


def _multiarray():
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _allowed_globals() -> Dict[Tuple[str, str], Any]:
    """Every global a numpy state dict can reference, resolved here rather than imported by name."""
    ma = _multiarray()
    allowed: Dict[Tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # bytes under protocol 2
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = ma._reconstruct
        allowed[(module, "scalar")] = ma.scalar  # numpy scalars (e.g. a step counter)
    for builtins in ("builtins", "__builtin__"):  # Python 3 and Python 2 pickles
        for kind in (dict, list, tuple, set, frozenset, bytearray):
            allowed[(builtins, kind.__name__)] = kind
    return allowed


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding="latin1")  # what paddle.load uses, for Python 2 pickles
        self._path = path
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UserError(
                f"refusing to load {self._path}: it contains a pickled callable {module}.{name}; "
                "only arrays are allowed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UserError(f"refusing to load {self._path}: it references external objects; only arrays are allowed")


def _as_array(path: Path, key: str, value: Any) -> np.ndarray:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        value = value[1]  # (parameter name, ndarray): how Paddle >= 2.1 pickles a Tensor
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray) or value.dtype.hasobject:
        kind = f"an array of {value.dtype}" if isinstance(value, np.ndarray) else f"a {type(value).__name__}"
        raise UserError(f"{path}: entry '{key}' is {kind}, not a numeric array")
    return value


def read_pdparams(path: Union[str, Path]) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """The arrays of a ``.pdparams`` file by structured name, and its structured -> parameter name table
    (empty when the file has none). Refuses, with a UserError, any file that pickles anything else."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _ArraysOnlyUnpickler(f, path).load()
    except UserError:
        raise
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    except Exception as e:  # truncated or not a pickle at all
        raise UserError(f"{path} is not a readable .pdparams pickle: {type(e).__name__}: {e}") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} holds a {type(obj).__name__}, not a dict of arrays")
    obj = dict(obj)
    names = obj.pop(NAME_TABLE_KEY, None) or {}
    split = obj.pop(SPLIT_INFO_KEY, None) or {}
    if not isinstance(names, dict) or not isinstance(split, dict):
        raise UserError(f"{path}: malformed bookkeeping entries")
    for key, info in split.items():  # rejoin tensors Paddle split for protocol 2/3
        try:
            parts = [_as_array(path, p, obj.pop(p)) for p in info["slices"]]
            obj[key] = np.concatenate(parts).reshape(tuple(info["OriginShape"]))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{path}: cannot rejoin the split tensor '{key}': {e}") from None
    arrays: Dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise UserError(f"{path}: key {key!r} is not a string")
        arrays[key] = _as_array(path, key, value)
    return arrays, {str(k): str(v) for k, v in names.items()}


def load_pdparams(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    """A ``.pdparams`` state dict (structured name -> array) without executing anything in the file."""
    return read_pdparams(path)[0]


def save_pdparams(
    state: Mapping[str, Any],
    path: Union[str, Path],
    names: Optional[Mapping[str, str]] = None,
) -> None:
    """Write ``state`` exactly as ``paddle.save(layer.state_dict(), path)`` does (protocol 4).

    Values are numpy arrays or Paddle tensors. ``names`` gives the parameter name recorded for a
    numpy value in the name table (Paddle tensors keep their own ``.name``); without it Paddle
    records the generated name of the temporary tensor.
    """
    import paddle

    tensors = {}
    for key, value in state.items():
        if isinstance(value, paddle.Tensor):
            tensors[key] = value
            continue
        tensor = paddle.to_tensor(np.ascontiguousarray(value), place=paddle.CPUPlace())
        if names and key in names:
            tensor.name = names[key]
        tensors[key] = tensor
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    paddle.save(tensors, str(path))


def save_layer_state(layer: Any, path: Union[str, Path]) -> None:
    """``paddle.save(layer.state_dict(), path)``, the same content (structured name -> array, plus the
    name table), written one tensor at a time.

    paddle.save first copies every tensor into a numpy dict and then pickles it with a memo that
    keeps each array's bytes alive until the end: three times the weights in memory, 10 GB for
    ResNeXt101_32x48d_wsl. Here each tensor becomes an array only while it is written, and the
    pickler runs without a memo (a flat dict of arrays has nothing to share)."""
    import paddle

    state = layer.state_dict()
    obj: Dict[str, Any] = dict(state)
    obj[NAME_TABLE_KEY] = {k: v.name for k, v in state.items()}

    class _TensorsAsArrays(pickle.Pickler):
        def reducer_override(self, value: Any) -> Any:
            if isinstance(value, paddle.Tensor):
                return np.array(value.cpu()).__reduce__()  # pickled exactly as the numpy array
            return NotImplemented

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickler = _TensorsAsArrays(f, protocol=4)  # paddle.save's default protocol
        pickler.fast = True
        pickler.dump(obj)


def load_into(layer: Any, state: Mapping[str, np.ndarray], model_name: Optional[str] = None) -> None:
    """Check that ``state`` fits ``layer`` key for key and shape for shape, then ``set_state_dict``.

    A misfit raises one UserError naming the first missing keys, unexpected keys and shape mismatches.
    """
    name = model_name or type(layer).__name__
    own = layer.state_dict()
    check_fit(name, shapes_of(state), {k: tuple(v.shape) for k, v in own.items()})
    for key, value in state.items():
        want = _numpy_dtype(own[key].dtype)
        value = np.asarray(value)
        if want is not None and value.dtype != want and not (value.dtype.kind == "f" and want.kind == "f"):
            raise UserError(f"checkpoint does not fit {name}: {key} is {value.dtype}, the model wants {want}")
    # tensor by tensor, so at most one converted copy exists besides the model and the checkpoint
    for key, value in state.items():
        want = _numpy_dtype(own[key].dtype)
        value = np.asarray(value)
        if want is not None and value.dtype != want:
            value = value.astype(want)  # e.g. a float16 checkpoint into a float32 model
        own[key].set_value(value)


def _numpy_dtype(paddle_dtype: Any) -> Optional[np.dtype]:
    try:
        return np.dtype(str(paddle_dtype).rsplit(".", 1)[-1])
    except TypeError:  # bfloat16 and friends have no numpy twin
        return None
