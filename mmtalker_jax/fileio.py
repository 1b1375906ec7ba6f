"""Atomic writes: a file is either complete under its final name or absent."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Iterator

from mmtalker_jax.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
  """Yields a temporary path beside `path`; renames it onto `path` on success.

  On any exception the temporary file is removed and `path` is untouched.
  The temporary name keeps the final suffix, so writers that dispatch on the
  extension (soundfile, numpy, PIL) still see it.

  Raises:
    InputError: naming `path`, if its folder cannot be created or written.
  """
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  suffix = os.path.splitext(path)[1]
  try:
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
  except OSError as e:
    raise InputError(path, f"cannot write here ({e.strerror})") from None
  os.close(fd)
  try:
    yield tmp
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
  write_bytes(path, text.encode("utf-8"))


def read_json(path: str | os.PathLike):
  """The JSON value in `path`.

  Raises:
    InputError: naming `path`, if it cannot be read or is not JSON.
  """
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise InputError(path, f"not readable JSON ({e})") from None
