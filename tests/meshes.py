"""Small synthetic meshes for tests."""

import numpy as np
import scipy.spatial


def disk_mesh(num_vertices: int, seed: int = 0):
  """A bumpy disk-like face mesh with exactly `num_vertices` vertices: ([V,3], [F,3])."""
  rng = np.random.default_rng(seed)
  r = np.sqrt(rng.uniform(0, 1, num_vertices))
  a = rng.uniform(0, 2 * np.pi, num_vertices)
  xy = np.stack([r * np.cos(a), r * np.sin(a)], 1)
  faces = scipy.spatial.Delaunay(xy).simplices.astype(np.int32)
  z = 0.3 * np.sqrt(1.2 - r ** 2) + 0.05 * np.sin(5 * xy[:, 0])
  return np.concatenate([xy, z[:, None]], 1).astype(np.float32), faces


def seamed_atlas(vertices: np.ndarray, faces: np.ndarray, fraction: float = 0.3):
  """Corner UVs [F,3,2] with two islands, like FLAME's atlas.

  The faces left of the `fraction` quantile of x form a second island, moved
  and squeezed; vertices on the cut have one UV per island. Returns
  (face_uv, island [F] bool).
  """
  flat = vertices[:, :2] - vertices[:, :2].min(0)
  flat = flat / flat.max()
  corner = flat[faces].astype(np.float64)
  island = vertices[faces][:, :, 0].mean(1) < np.quantile(vertices[:, 0], fraction)
  corner[island, :, 0] = corner[island, :, 0] * 0.2 + 2.0
  corner[:, :, 0] /= 2.5
  return np.round(corner, 6).astype(np.float32), island
