"""Loading `configs/*.py` files outside absl (for the `python -m` tools)."""

from __future__ import annotations

import importlib.util
import os
import sys

import ml_collections

from mmtalker_jax.errors import InputError


def load_config(path: str | os.PathLike) -> ml_collections.ConfigDict:
  """Imports a config file and returns its `get_config()` (`FILE:ARG`: `get_config(ARG)`).

  The file's folder's parent goes on sys.path so `from configs import default`
  works from any working directory.

  Raises:
    InputError: if the file is missing or has no get_config().
  """
  path, _, arg = os.fspath(path).partition(":")
  path = os.path.abspath(path)
  if not os.path.isfile(path):
    raise InputError(path, "config file not found")
  root = os.path.dirname(os.path.dirname(path))
  if root not in sys.path:
    sys.path.insert(0, root)
  spec = importlib.util.spec_from_file_location("_mmtalker_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise InputError(path, "config file has no get_config()")
  return module.get_config(arg) if arg else module.get_config()
