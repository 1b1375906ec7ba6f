"""Reading and writing template meshes (OBJ with per-corner UVs, PLY).

UVs live on face corners, as in the OBJ format: `f v/vt` names a position and
a texture coordinate separately, so a vertex on a UV seam (FLAME's template
has 5023 `v` and 5118 `vt`) has one UV per island it belongs to.
"""

from __future__ import annotations

import io
import os
from typing import NamedTuple

import numpy as np

from mmtalker_jax import fileio
from mmtalker_jax.errors import InputError


class RawMesh(NamedTuple):
  """A triangle mesh as read from disk.

  vertices: [V,3] float32.
  faces: [F,3] int32, indices into vertices.
  face_uv: [F,3,2] float32, the UV of every face corner, or None when the file
    has none.
  uv_layout: an OBJ's own texture coordinates, ([U,2] float32 `vt` in file
    order, [F,3] int32 the `vt` of each face corner), so that a written OBJ
    keeps them in that order; None for other files.
  """
  vertices: np.ndarray
  faces: np.ndarray
  face_uv: np.ndarray | None
  uv_layout: tuple[np.ndarray, np.ndarray] | None = None


def _obj_index(token: str, count: int, path: str, line: int) -> int:
  """A 1-based (or negative, relative) OBJ index -> 0-based."""
  i = int(token)
  if i < 0:
    i += count + 1
  if not 1 <= i <= count:
    raise InputError(path, f"line {line}: index {token} out of range (1..{count})")
  return i - 1


def _parse_obj(path: str) -> RawMesh:
  positions, texcoords, faces, corners = [], [], [], []
  with open(path, encoding="utf-8", errors="replace") as f:
    for n, line in enumerate(f, 1):
      parts = line.split()
      if not parts:
        continue
      tag = parts[0]
      try:
        if tag == "v":
          positions.append([float(x) for x in parts[1:4]])
        elif tag == "vt":
          texcoords.append([float(x) for x in parts[1:3]])
        elif tag == "f":
          refs = [p.split("/") for p in parts[1:]]
          if len(refs) < 3:
            raise InputError(path, f"line {n}: a face needs at least 3 corners")
          v = [_obj_index(r[0], len(positions), path, n) for r in refs]
          t = [_obj_index(r[1], len(texcoords), path, n) if len(r) > 1 and r[1] else -1
               for r in refs]
          for k in range(1, len(v) - 1):  # polygons as triangle fans
            faces.append([v[0], v[k], v[k + 1]])
            corners.append([t[0], t[k], t[k + 1]])
      except (ValueError, IndexError):
        raise InputError(path, f"line {n}: cannot parse {line.strip()[:60]!r}") from None
  vertices = np.asarray(positions, np.float32).reshape(-1, 3)
  faces = np.asarray(faces, np.int32).reshape(-1, 3)
  corners = np.asarray(corners, np.int64).reshape(-1, 3)
  face_uv = None
  if len(corners) and (corners >= 0).any():
    if (corners < 0).any():
      raise InputError(path, "some faces have texture coordinates (f v/vt) and others not")
    table = np.asarray(texcoords, np.float32).reshape(-1, 2)
    return RawMesh(vertices, faces, table[corners], (table, corners.astype(np.int32)))
  return RawMesh(vertices, faces, face_uv)


def _load_with_trimesh(path: str) -> RawMesh:
  import trimesh  # deferred: only PLY and other formats need it

  try:
    mesh = trimesh.load(path, process=False, maintain_order=True, force="mesh")
  except Exception as e:  # trimesh raises many types for corrupt files
    raise InputError(path, f"cannot read mesh ({type(e).__name__}: {e})") from None
  vertices = np.asarray(mesh.vertices, dtype=np.float32)
  faces = np.asarray(mesh.faces, dtype=np.int32)
  uv = getattr(mesh.visual, "uv", None)
  face_uv = None
  if uv is not None and np.shape(uv) == (len(vertices), 2) and len(faces):
    face_uv = np.asarray(uv, np.float32)[faces]
  return RawMesh(vertices, faces, face_uv)


def read_mesh(path: str | os.PathLike) -> RawMesh:
  """Reads an OBJ or PLY, keeping the file's vertex order and its UV corners.

  OBJ is read directly (positions, `vt`, and `f v/vt/vn` faces; polygons are
  split into fans), so seams keep every UV; other formats go through trimesh
  with `process=False, maintain_order=True` (one UV per vertex, if any).

  Raises:
    InputError: if the file is missing, unreadable, or not a triangle mesh.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(path, "mesh file not found")
  if path.lower().endswith(".obj"):
    raw = _parse_obj(path)
  else:
    raw = _load_with_trimesh(path)
  if raw.vertices.ndim != 2 or len(raw.vertices) < 3 or len(raw.faces) < 1:
    raise InputError(path, "not a triangle mesh (no vertices or faces)")
  if not np.all(np.isfinite(raw.vertices)):
    raise InputError(path, "vertex positions hold NaN or inf")
  if raw.face_uv is not None and not np.all(np.isfinite(raw.face_uv)):
    raise InputError(path, "texture coordinates hold NaN or inf")
  return raw


def vertex_uv_of(faces: np.ndarray, face_uv: np.ndarray, num_vertices: int) -> np.ndarray:
  """One UV per vertex: its corner's UV in the lowest-numbered face that uses it.

  This is the rule for seam vertices (which have one UV per island): the
  vertex takes the UV of its first face. `MeshAssets.vertex_points` queries
  every vertex through that same face.

  Returns:
    [V,2] float32 (zeros for vertices in no face).
  """
  uv = np.zeros((num_vertices, 2), np.float32)
  used, first = np.unique(faces.reshape(-1), return_index=True)  # first corner, row-major
  uv[used] = face_uv.reshape(-1, 2)[first]
  return uv


def obj_text(vertices: np.ndarray, faces: np.ndarray, face_uv: np.ndarray | None = None,
             uv_layout: tuple[np.ndarray, np.ndarray] | None = None) -> str:
  """Formats a mesh as OBJ text, with per-corner UVs when `face_uv` is given.

  With `uv_layout` (`RawMesh.uv_layout` of the template the faces come from),
  the `vt` lines and each corner's `vt` are the template file's own, in its
  order, so tools that index UVs match. Otherwise texture coordinate i is
  vertex i's UV (`vertex_uv_of`), and corners on a seam that differ from it
  get extra `vt` entries after those. Formatting is fixed (%.6f), so equal
  arrays always give identical bytes.
  """
  buf = io.StringIO()
  np.savetxt(buf, vertices, fmt="v %.6f %.6f %.6f")
  f1 = faces.astype(np.int64) + 1
  if face_uv is None and uv_layout is None:
    np.savetxt(buf, f1, fmt="f %d %d %d")
    return buf.getvalue()
  if uv_layout is not None:
    table, index = uv_layout
    np.savetxt(buf, table, fmt="vt %.6f %.6f")
    refs = np.stack([f1, index.astype(np.int64) + 1], axis=2).reshape(-1, 6)
    np.savetxt(buf, refs, fmt="f %d/%d %d/%d %d/%d")
    return buf.getvalue()
  num_v = len(vertices)
  vertex_uv = vertex_uv_of(faces, face_uv, num_v)
  quant = lambda x: np.round(np.asarray(x, np.float64) * 1e6).astype(np.int64)
  corner_q = quant(face_uv.reshape(-1, 2))
  same = (corner_q == quant(vertex_uv)[faces.reshape(-1)]).all(axis=1)
  extra_keys = np.concatenate([faces.reshape(-1, 1)[~same], corner_q[~same]], axis=1)
  uniq, inverse = np.unique(extra_keys, axis=0, return_inverse=True)
  tex = np.where(same, faces.reshape(-1), 0).astype(np.int64)
  tex[~same] = num_v + inverse.reshape(-1)
  extra_uv = uniq[:, 1:] / 1e6
  np.savetxt(buf, np.concatenate([vertex_uv, extra_uv]), fmt="vt %.6f %.6f")
  refs = np.stack([f1, tex.reshape(-1, 3) + 1], axis=2).reshape(-1, 6)
  np.savetxt(buf, refs, fmt="f %d/%d %d/%d %d/%d")
  return buf.getvalue()


def write_obj(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
              face_uv: np.ndarray | None = None,
              uv_layout: tuple[np.ndarray, np.ndarray] | None = None) -> None:
  """Writes an OBJ atomically (see `obj_text`)."""
  fileio.write_text(path, obj_text(vertices, faces, face_uv, uv_layout))
