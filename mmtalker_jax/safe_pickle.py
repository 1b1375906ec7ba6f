"""A restricted unpickler for templates.pkl and FLAME_masks.pkl.

Both files are pickles of plain containers holding numpy arrays, often
written by Python 2 (hence latin1). Unpickling an arbitrary pickle runs
arbitrary code, so only the handful of globals that rebuild numpy arrays are
admitted; any other class makes loading fail before it is constructed.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

import numpy as np

from mmtalker_jax.errors import InputError

# (module, name) pairs numpy arrays and scalars are rebuilt from, in the spellings
# of numpy 1.x (`numpy.core`) and 2.x (`numpy._core`).
_ALLOWED = frozenset(
    [(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
     for n in ("_reconstruct", "scalar")]
    + [("numpy", "ndarray"), ("numpy", "dtype"),
       ("numpy.core.numeric", "_frombuffer"),
       ("numpy._core.numeric", "_frombuffer"),
       ("_codecs", "encode")])


class _Refused(pickle.UnpicklingError):
  """The pickle would construct a class outside the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _ALLOWED:
      return super().find_class(module, name)
    raise _Refused(
        f"refusing to construct {module}.{name}: only numpy arrays, dicts, "
        "lists, strings and numbers are allowed")


def loads(data: bytes) -> Any:
  """Unpickles `data`, admitting only plain containers and numpy arrays."""
  return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def load(path: str | os.PathLike) -> Any:
  """Loads a pickle file with the restricted unpickler.

  Raises:
    InputError: naming `path`, if the file is missing, truncated, or would
      construct anything but plain containers and numpy arrays.
  """
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise InputError(path, f"cannot read pickle ({e.strerror})") from None
  try:
    return loads(data)
  except _Refused as e:
    raise InputError(path, f"unsafe pickle: {e}") from None
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
          AttributeError, UnicodeDecodeError) as e:
    raise InputError(path, f"truncated or corrupt pickle ({e})") from None


def load_templates(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads templates.pkl: {subject: [V,3] float32}.

  Raises:
    InputError: if the file is not a dict of [V,3] finite arrays.
  """
  obj = load(path)
  if not isinstance(obj, dict):
    raise InputError(path, f"expected a dict of subject -> [V,3] array, "
                     f"got {type(obj).__name__}")
  out = {}
  for subject, value in obj.items():
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 1 and arr.size % 3 == 0:
      arr = arr.reshape(-1, 3)
    if arr.ndim != 2 or arr.shape[1] != 3:
      raise InputError(path, f"template of subject {subject!r} has shape "
                       f"{np.shape(value)}, expected [V,3]")
    if not np.all(np.isfinite(arr)):
      raise InputError(path, f"template of subject {subject!r} holds NaN or inf")
    out[str(subject)] = arr
  return out
