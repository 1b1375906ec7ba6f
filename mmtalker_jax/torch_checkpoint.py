"""Reading a PyTorch state dict (`torch.save`'s zip format) without torch, safely.

A `.pth` file is a zip archive: `<name>/data.pkl` pickles the dict, and each
tensor's bytes sit in `<name>/data/<key>`. Unpickling runs whatever the pickle
names, so only what a state dict is built from is admitted: OrderedDict,
torch's tensor-rebuild functions (replaced here by ones that make numpy
arrays) and the storage type names (read as dtypes). Anything else (a pickled
model class, `os.system`) is refused before it is constructed.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict
from typing import Any

import ml_dtypes
import numpy as np

from mmtalker_jax.errors import InputError

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Refused(pickle.UnpicklingError):
  """The pickle would construct something a state dict is not made of."""


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *_) -> np.ndarray:
  """torch._utils._rebuild_tensor_v2 as numpy: a strided view of the storage, copied."""
  if not size:
    return storage[offset].copy()
  item = storage.itemsize
  view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                         strides=tuple(s * item for s in stride))
  return np.array(view)


def _rebuild_parameter(data: np.ndarray, *_) -> np.ndarray:
  return data


class _DType:
  """A storage type read from the pickle: only its dtype matters."""

  def __init__(self, dtype):
    self.dtype = np.dtype(dtype)


_FUNCTIONS = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
              ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
              ("collections", "OrderedDict"): OrderedDict}


class _StateDictUnpickler(pickle.Unpickler):

  def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, byteorder: str):
    super().__init__(io.BytesIO(data))
    self.archive, self.prefix, self.byteorder = archive, prefix, byteorder

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _FUNCTIONS:
      return _FUNCTIONS[(module, name)]
    if module == "torch" and name in _STORAGE_DTYPES:
      return _DType(_STORAGE_DTYPES[name])
    raise _Refused(f"refusing to construct {module}.{name}: a state dict holds only "
                   "tensors and plain containers")

  def persistent_load(self, pid) -> np.ndarray:
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
      raise _Refused(f"unknown persistent id {pid!r}")
    kind, key = pid[1], pid[2]
    if not isinstance(kind, _DType):
      raise _Refused(f"unknown storage type {kind!r}")
    dtype = kind.dtype.newbyteorder("<" if self.byteorder == "little" else ">")
    raw = self.archive.read(f"{self.prefix}/data/{key}")
    return np.frombuffer(raw, dtype).astype(kind.dtype)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """{name: array} of a `torch.save`d state dict.

  Raises:
    InputError: naming `path`: missing, not torch's zip format (the legacy
      pre-1.6 format is not read), corrupt, or constructing anything but
      tensors and containers.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(path, "checkpoint file not found")
  try:
    with zipfile.ZipFile(path) as archive:
      names = archive.namelist()
      pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
      if not pickles:
        raise InputError(path, "holds no data.pkl: not a PyTorch zip checkpoint")
      prefix = pickles[0].split("/")[0]
      order = f"{prefix}/byteorder"
      byteorder = archive.read(order).decode().strip() if order in names else "little"
      state = _StateDictUnpickler(archive.read(pickles[0]), archive, prefix, byteorder).load()
  except zipfile.BadZipFile:
    raise InputError(path, "not a zip archive: not a PyTorch checkpoint saved by torch >= 1.6 "
                     "(re-save it with torch.save(torch.load(path), path))") from None
  except _Refused as e:
    raise InputError(path, f"unsafe checkpoint: {e}") from None
  except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as e:
    raise InputError(path, f"corrupt checkpoint ({e})") from None
  if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
    raise InputError(path, "is not a state dict (a mapping of names to tensors)")
  return dict(state)
