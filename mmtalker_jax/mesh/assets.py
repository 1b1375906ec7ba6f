"""MeshAssets: everything static about a template topology, built once in numpy."""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

import jraph
import numpy as np

from mmtalker_jax.errors import InputError
from mmtalker_jax.mesh import io as mesh_io
from mmtalker_jax.mesh.graph import mesh_graph
from mmtalker_jax.mesh.parameterize import NotParameterizable, disk_parameterization
from mmtalker_jax.mesh.regions import load_regions


@dataclasses.dataclass(frozen=True)
class MeshAssets:
  """Static assets of one template topology.

  Attributes:
    vertices: [V,3] float32 reference positions (the topology file's).
    faces: [F,3] int32.
    uv: [V,2] float32, one UV per vertex.
    face_areas: [F] float32 surface areas of the reference mesh.
    graph: jraph.GraphsTuple of the edge graph (both directions).
    regions: {name: [n] int32 vertex indices}, e.g. 'lips', 'eye', 'upper_face'.
  """
  vertices: np.ndarray
  faces: np.ndarray
  uv: np.ndarray
  face_areas: np.ndarray
  graph: jraph.GraphsTuple
  regions: Mapping[str, np.ndarray]

  @property
  def num_vertices(self) -> int:
    return len(self.vertices)

  @property
  def num_faces(self) -> int:
    return len(self.faces)

  def vertex_points(self) -> tuple[np.ndarray, np.ndarray]:
    """Every vertex as a surface point (face id, barycentric weights).

    Returns:
      face_ids [V] int32 (a face containing the vertex), bary [V,3] float32
      (one-hot on the vertex's corner of that face).
    """
    face_ids = np.zeros(self.num_vertices, np.int32)
    corner = np.zeros(self.num_vertices, np.int64)
    # Later faces overwrite earlier ones; any incident face is as good.
    for c in range(3):
      face_ids[self.faces[:, c]] = np.arange(self.num_faces, dtype=np.int32)
    for c in range(3):
      hit = self.faces[face_ids, c] == np.arange(self.num_vertices)
      corner[hit] = c
    bary = np.eye(3, dtype=np.float32)[corner]
    return face_ids, bary


def triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
  """[F] areas of the triangles `faces` of `vertices`."""
  tri = vertices[faces].astype(np.float64)
  cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
  return (0.5 * np.linalg.norm(cross, axis=1)).astype(np.float32)


def build_mesh_assets(vertices: np.ndarray, faces: np.ndarray,
                      uv: np.ndarray | None = None,
                      regions: Mapping[str, np.ndarray] | None = None,
                      source: str = "") -> MeshAssets:
  """Builds MeshAssets from arrays; computes UVs when `uv` is None.

  Raises:
    InputError: naming `source`, for out-of-range faces, a mesh that cannot be
      flattened, or degenerate (zero-area) geometry.
  """
  vertices = np.asarray(vertices, np.float32)
  faces = np.asarray(faces, np.int32)
  num_v = len(vertices)
  if faces.min() < 0 or faces.max() >= num_v:
    raise InputError(source, f"face index out of range for {num_v} vertices")
  if uv is None:
    try:
      uv = disk_parameterization(vertices, faces)
    except NotParameterizable as e:
      raise InputError(source, f"mesh has no UVs and cannot be parameterized: {e}") from None
  areas = triangle_areas(vertices, faces)
  if areas.sum() <= 0:
    raise InputError(source, "all faces have zero area")
  return MeshAssets(
      vertices=vertices, faces=faces, uv=np.asarray(uv, np.float32),
      face_areas=areas, graph=mesh_graph(faces, num_v),
      regions={k: np.asarray(v, np.int32) for k, v in (regions or {}).items()})


def load_mesh_assets(mesh_path: str | os.PathLike,
                     regions_spec: Mapping[str, Sequence[str]] | None = None,
                     regions_root: str | os.PathLike | None = None) -> MeshAssets:
  """Reads a template OBJ/PLY and its region files.

  Args:
    mesh_path: the topology file; its `vt` give the UVs when present.
    regions_spec: {region: [source, ...]} as in `regions.load_regions`.
    regions_root: folder region sources are relative to (default: the mesh's).
  """
  raw = mesh_io.read_mesh(mesh_path)
  root = regions_root if regions_root is not None else os.path.dirname(os.fspath(mesh_path))
  regions = load_regions(root, regions_spec or {}, len(raw.vertices))
  return build_mesh_assets(raw.vertices, raw.faces, raw.uv, regions,
                           source=os.fspath(mesh_path))
