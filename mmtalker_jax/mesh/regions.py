"""Vertex regions (lips, eyes, upper face) from the files corpora ship.

A region is named in a config by a list of sources, unioned:
  'regions/lve.txt'            BIWI style: comma/whitespace-separated indices
  'FLAME_masks.pkl:lips'       a key of a pickled dict of index arrays
  'regions.json:lips'          a key of a JSON dict of index lists
  'weighted_mouth_mask.txt>0.1' Multiface style: one weight per vertex, the
                               region is every vertex whose weight exceeds 0.1
"""

from __future__ import annotations

import os
import re
from typing import Mapping, Sequence

import numpy as np

from mmtalker_jax import fileio, safe_pickle
from mmtalker_jax.errors import InputError


def _read_numbers(path: str) -> list[str]:
  with open(path, encoding="utf-8") as f:
    return [t for t in re.split(r"[,\s]+", f.read()) if t]


def _weights_above(path: str, source: str, threshold: str, num_vertices: int) -> np.ndarray:
  """'FILE>THRESHOLD': the indices of the vertices whose weight in FILE exceeds THRESHOLD."""
  try:
    weights = np.asarray(_read_numbers(path), np.float64)
    cut = float(threshold)
  except ValueError:
    raise InputError(path, f"region {source!r}: not a list of numbers and a threshold") from None
  if len(weights) != num_vertices:
    raise InputError(path, f"holds {len(weights)} weights, one per vertex of a template "
                     f"with {num_vertices} vertices expected")
  idx = np.flatnonzero(weights > cut)
  if idx.size == 0:
    raise InputError(path, f"region {source!r} is empty: no weight exceeds {cut:g}")
  return idx


def _read_source(root: str, source: str, num_vertices: int) -> tuple[str, np.ndarray]:
  weighted = ">" in source
  name, _, key = source.partition(">" if weighted else ":")
  path = os.path.join(root, name)
  if not os.path.isfile(path):
    raise InputError(path, "region file not found")
  if weighted:
    return path, _weights_above(path, source, key, num_vertices)
  if path.endswith(".pkl") or path.endswith(".json"):
    if not key:
      raise InputError(path, f"region source {source!r} needs ':key'")
    if path.endswith(".pkl"):
      table = safe_pickle.load(path)
    else:
      table = fileio.read_json(path)
    if not isinstance(table, dict) or key not in table:
      keys = sorted(table) if isinstance(table, dict) else []
      raise InputError(path, f"no region {key!r} (has {keys})")
    values = table[key]
  else:
    values = _read_numbers(path)
  try:
    idx = np.asarray(values, dtype=np.float64).ravel()
  except (TypeError, ValueError):
    raise InputError(path, f"region {source!r} holds non-numeric indices") from None
  if idx.size == 0:
    raise InputError(path, f"region {source!r} is empty")
  if not np.all(idx == np.round(idx)):
    raise InputError(path, f"region {source!r} holds non-integer indices")
  return path, idx.astype(np.int64)


def load_regions(root: str | os.PathLike,
                 spec: Mapping[str, Sequence[str]],
                 num_vertices: int) -> dict[str, np.ndarray]:
  """Reads every region named in `spec`.

  Args:
    root: folder the sources are relative to.
    spec: {region name: [source, ...]} (see module docstring).
    num_vertices: V, to range-check the indices.

  Returns:
    {region name: sorted unique int32 vertex indices}.

  Raises:
    InputError: naming the file, for a missing file or key, or an index
      outside [0, V).
  """
  out = {}
  for region, sources in spec.items():
    if isinstance(sources, str):
      sources = [sources]
    parts = []
    for source in sources:
      path, idx = _read_source(os.fspath(root), source, num_vertices)
      bad = idx[(idx < 0) | (idx >= num_vertices)]
      if bad.size:
        raise InputError(path, f"region {region!r} index {int(bad[0])} is out of "
                         f"range for a template with {num_vertices} vertices")
      parts.append(idx)
    out[region] = np.unique(np.concatenate(parts)).astype(np.int32)
  return out
