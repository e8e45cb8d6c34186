"""Reading MindSpore ``.ckpt`` files safely: plain tensors only.

A ``.ckpt`` is a protobuf ``Checkpoint``: a list of ``(tag, TensorProto{dims, tensor_type,
tensor_content})`` entries, a large tensor split over consecutive entries with the same tag, and
optionally a ``crc_num`` trailer. ``mindspore.load_checkpoint`` also accepts map tensors, ``str``
entries and encrypted files, and hands the raw bytes and dims to a C++ converter without checking
that they agree. This reader parses the protobuf itself and accepts numeric tensors whose bytes match
their shape and type; anything else is refused with one line.
"""
from __future__ import annotations

import binascii
import math
from pathlib import Path
from typing import Dict, List

import numpy as np

from zoo.errors import UserError

# MindSpore's tensor_type names for the numeric types a network's weights can hold
NUMPY_TYPES = {
    "Float16": np.float16, "Float32": np.float32, "Float64": np.float64,
    "Int8": np.int8, "Int16": np.int16, "Int32": np.int32, "Int64": np.int64,
    "UInt8": np.uint8, "UInt16": np.uint16, "UInt32": np.uint32, "UInt64": np.uint64, "Bool": np.bool_,
}
CRC_MARK = b"crc_num"  # save_checkpoint(crc_check=True) appends b"crc_num" + 10 bytes of CRC-32


def _refuse(path: Path, why: str) -> UserError:
    return UserError(f"refusing to load {path}: not a plain MindSpore checkpoint ({why})")


def read_ckpt(path: Path) -> Dict[str, np.ndarray]:
    """The checkpoint's tensors by tag, as numpy arrays, or a one-line UserError."""
    from google.protobuf.message import DecodeError
    from mindspore.train.checkpoint_pb2 import Checkpoint

    path = Path(path)
    data = path.read_bytes()
    if data[-17:-10] == CRC_MARK:
        data, crc = data[:-17], int.from_bytes(data[-10:], "big")
        if binascii.crc32(data, 0) != crc:
            raise _refuse(path, "its CRC does not match its content")
    ckpt = Checkpoint()
    try:
        ckpt.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        why = " ".join(str(e).split())[:120] or type(e).__name__
        raise _refuse(path, f"the protobuf does not parse: {why}; an encrypted checkpoint is not accepted either") from None
    del data  # the parsed message holds the bytes now
    size = ckpt.ByteSize()
    ckpt.DiscardUnknownFields()
    if ckpt.ByteSize() != size:  # bytes the schema does not know: not something MindSpore wrote
        raise _refuse(path, "it holds fields a checkpoint does not have")
    if not ckpt.value:
        raise _refuse(path, "it holds no tensors")
    out: Dict[str, np.ndarray] = {}
    chunks: List[bytes] = []
    entries = list(ckpt.value)
    for i, entry in enumerate(entries):
        tag = entry.tag
        if not tag.isprintable():  # names end up in messages and manifests, one line each
            raise _refuse(path, f"entry {ascii(tag[:80])} has control characters in its name")
        if not entry.HasField("tensor"):
            raise _refuse(path, f"entry '{tag[:80]}' is a map tensor")
        t = entry.tensor
        if t.tensor_type not in NUMPY_TYPES:
            raise _refuse(path, f"entry '{tag[:80]}' has type {ascii(t.tensor_type[:40])}; numeric tensors only")
        chunks.append(t.tensor_content)
        if i + 1 < len(entries) and entries[i + 1].tag == tag:
            continue  # a large tensor continues in the next entry
        content = b"".join(chunks)
        chunks.clear()
        if tag in out:
            raise _refuse(path, f"entry '{tag[:80]}' appears twice")
        dims = [] if list(t.dims) == [0] else list(t.dims)  # MindSpore writes a scalar's dims as [0]
        dtype = np.dtype(NUMPY_TYPES[t.tensor_type])
        if any(d < 0 for d in dims) or len(content) != math.prod(dims) * dtype.itemsize:
            raise _refuse(path, f"entry '{tag[:80]}': {len(content)} bytes do not make a {t.tensor_type} tensor "
                                f"of shape {tuple(dims)}")
        out[tag] = np.frombuffer(content, dtype=dtype).reshape(dims)
    return out
