"""Reading and writing template meshes (OBJ with UVs, PLY)."""

from __future__ import annotations

import io
import os
from typing import NamedTuple

import numpy as np
import trimesh

from mmtalker_jax import fileio
from mmtalker_jax.errors import InputError


class RawMesh(NamedTuple):
  """A triangle mesh as read from disk.

  vertices: [V,3] float32.
  faces: [F,3] int32, indices into vertices.
  uv: [V,2] float32 one UV per vertex, or None when the file has none.
  """
  vertices: np.ndarray
  faces: np.ndarray
  uv: np.ndarray | None


def read_mesh(path: str | os.PathLike) -> RawMesh:
  """Reads an OBJ or PLY keeping the file's vertex order.

  Loaded with `process=False, maintain_order=True`, so vertices are never
  merged or split at UV seams; a vertex on a seam keeps one of its UVs.

  Raises:
    InputError: if the file is missing, unreadable, or not a triangle mesh.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(path, "mesh file not found")
  try:
    mesh = trimesh.load(path, process=False, maintain_order=True, force="mesh")
  except Exception as e:  # trimesh raises many types for corrupt files
    raise InputError(path, f"cannot read mesh ({type(e).__name__}: {e})") from None
  vertices = np.asarray(mesh.vertices, dtype=np.float32)
  faces = np.asarray(mesh.faces, dtype=np.int32)
  if vertices.ndim != 2 or len(vertices) < 3 or faces.ndim != 2 or len(faces) < 1:
    raise InputError(path, "not a triangle mesh (no vertices or faces)")
  if not np.all(np.isfinite(vertices)):
    raise InputError(path, "vertex positions hold NaN or inf")
  uv = getattr(mesh.visual, "uv", None)
  if uv is not None:
    uv = np.asarray(uv, dtype=np.float32)
    if uv.shape != (len(vertices), 2) or not np.all(np.isfinite(uv)):
      uv = None
  return RawMesh(vertices, faces, uv)


def obj_text(vertices: np.ndarray, faces: np.ndarray,
             uv: np.ndarray | None = None) -> str:
  """Formats a mesh as OBJ text; with `uv`, vertex i uses texture coordinate i.

  Formatting is fixed (%.6f), so equal arrays always give identical bytes.
  """
  buf = io.StringIO()
  np.savetxt(buf, vertices, fmt="v %.6f %.6f %.6f")
  if uv is not None:
    np.savetxt(buf, uv, fmt="vt %.6f %.6f")
    f1 = faces.astype(np.int64) + 1
    np.savetxt(buf, np.repeat(f1, 2, axis=1), fmt="f %d/%d %d/%d %d/%d")
  else:
    np.savetxt(buf, faces.astype(np.int64) + 1, fmt="f %d %d %d")
  return buf.getvalue()


def write_obj(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
              uv: np.ndarray | None = None) -> None:
  """Writes an OBJ atomically (see `obj_text`)."""
  fileio.write_text(path, obj_text(vertices, faces, uv))
