"""MeshAssets: everything static about a template topology, built once in numpy."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Mapping, Sequence

import jraph
import numpy as np

from mmtalker_jax.errors import InputError
from mmtalker_jax.mesh import io as mesh_io
from mmtalker_jax.mesh.graph import gcn_scale, mesh_graph
from mmtalker_jax.mesh.regions import load_regions


@dataclasses.dataclass(frozen=True)
class MeshAssets:
  """Static assets of one template topology.

  Attributes:
    vertices: [V,3] float32 reference positions (the topology file's).
    faces: [F,3] int32.
    face_uv: [F,3,2] float32, the UV of every face corner (the file's `vt`
      exactly; a seam vertex has one UV per island).
    vertex_uv: [V,2] float32, one UV per vertex: a seam vertex takes its UV
      in its lowest-numbered face (`mesh.io.vertex_uv_of`).
    face_areas: [F] float32 surface areas of the reference mesh.
    graph: jraph.GraphsTuple of the edge graph (both directions).
    gcn_scale: [V] float32 (degree + 1) ** -1/2, the GCN's symmetric
      normalisation with self loops (`mesh.graph.gcn_scale`).
    regions: {name: [n] int32 vertex indices}, e.g. 'lips', 'eye', 'upper_face'.
    fingerprint: hex digest of the faces and corner UVs (`topology_fingerprint`).
    uv_layout: the template OBJ's own `vt` table and corner indices
      (`RawMesh.uv_layout`), kept so written OBJs keep the file's `vt` order;
      None when the file had none.
  """
  vertices: np.ndarray
  faces: np.ndarray
  face_uv: np.ndarray
  vertex_uv: np.ndarray
  face_areas: np.ndarray
  graph: jraph.GraphsTuple
  gcn_scale: np.ndarray
  regions: Mapping[str, np.ndarray]
  fingerprint: str
  uv_layout: tuple[np.ndarray, np.ndarray] | None = None

  @property
  def num_vertices(self) -> int:
    return len(self.vertices)

  @property
  def num_faces(self) -> int:
    return len(self.faces)

  def vertex_points(self) -> tuple[np.ndarray, np.ndarray]:
    """Every vertex as a surface point (face id, barycentric weights).

    Each vertex is taken through its lowest-numbered face, the face whose
    corner UV `vertex_uv` holds, so a seam vertex is queried on that face's
    island.

    Returns:
      face_ids [V] int32, bary [V,3] float32 (one-hot on the vertex's corner).
    """
    face_ids = np.zeros(self.num_vertices, np.int32)
    corner = np.zeros(self.num_vertices, np.int64)
    used, first = np.unique(self.faces.reshape(-1), return_index=True)
    face_ids[used] = first // 3
    corner[used] = first % 3
    bary = np.eye(3, dtype=np.float32)[corner]
    return face_ids, bary


def triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
  """[F] areas of the triangles `faces` of `vertices`."""
  tri = vertices[faces].astype(np.float64)
  cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
  return (0.5 * np.linalg.norm(cross, axis=1)).astype(np.float32)


def topology_fingerprint(faces: np.ndarray, face_uv: np.ndarray) -> str:
  """A short digest of the faces and corner UVs (to 1e-6, the precision OBJ files keep).

  Two meshes with the same fingerprint index vertices and map the surface to
  UV identically, so a network trained on one runs on the other.
  """
  h = hashlib.sha256(np.ascontiguousarray(faces, "<i4").tobytes())
  h.update(np.round(np.asarray(face_uv, np.float64) * 1e6).astype("<i8").tobytes())
  return h.hexdigest()[:16]


def build_mesh_assets(vertices: np.ndarray, faces: np.ndarray,
                      face_uv: np.ndarray | None = None,
                      regions: Mapping[str, np.ndarray] | None = None,
                      source: str = "",
                      uv_layout: tuple[np.ndarray, np.ndarray] | None = None) -> MeshAssets:
  """Builds MeshAssets from arrays; computes UVs when `face_uv` is None.

  Args:
    vertices: [V,3]; faces: [F,3]; face_uv: [F,3,2] corner UVs or None (a
      disk parameterization is computed, one UV per vertex).

  Raises:
    InputError: naming `source`, for out-of-range faces, a mesh that cannot be
      flattened, or degenerate (zero-area) geometry.
  """
  vertices = np.asarray(vertices, np.float32)
  faces = np.asarray(faces, np.int32)
  num_v = len(vertices)
  if faces.min() < 0 or faces.max() >= num_v:
    raise InputError(source, f"face index out of range for {num_v} vertices")
  if face_uv is None:
    # Deferred: scipy.sparse takes 0.1 s to import, and meshes with UVs never need it.
    from mmtalker_jax.mesh import parameterize

    try:
      face_uv = parameterize.disk_parameterization(vertices, faces)[faces]
    except parameterize.NotParameterizable as e:
      raise InputError(source, f"mesh has no UVs and cannot be parameterized: {e}") from None
  face_uv = np.asarray(face_uv, np.float32)
  if face_uv.shape != (len(faces), 3, 2):
    raise InputError(source, f"corner UVs have shape {face_uv.shape}, expected "
                     f"({len(faces)}, 3, 2)")
  areas = triangle_areas(vertices, faces)
  graph = mesh_graph(faces, num_v)
  if areas.sum() <= 0:
    raise InputError(source, "all faces have zero area")
  return MeshAssets(
      vertices=vertices, faces=faces, face_uv=face_uv,
      vertex_uv=mesh_io.vertex_uv_of(faces, face_uv, num_v),
      face_areas=areas, graph=graph, gcn_scale=gcn_scale(graph, num_v),
      regions={k: np.asarray(v, np.int32) for k, v in (regions or {}).items()},
      fingerprint=topology_fingerprint(faces, face_uv), uv_layout=uv_layout)


def load_mesh_assets(mesh_path: str | os.PathLike,
                     regions_spec: Mapping[str, Sequence[str]] | None = None,
                     regions_root: str | os.PathLike | None = None) -> MeshAssets:
  """Reads a template OBJ/PLY and its region files.

  Args:
    mesh_path: the topology file; its corner `vt` give the UVs when present.
    regions_spec: {region: [source, ...]} as in `regions.load_regions`.
    regions_root: folder region sources are relative to (default: the mesh's).
  """
  raw = mesh_io.read_mesh(mesh_path)
  root = regions_root if regions_root is not None else os.path.dirname(os.fspath(mesh_path))
  regions = load_regions(root, regions_spec or {}, len(raw.vertices))
  return build_mesh_assets(raw.vertices, raw.faces, raw.face_uv, regions,
                           source=os.fspath(mesh_path), uv_layout=raw.uv_layout)
