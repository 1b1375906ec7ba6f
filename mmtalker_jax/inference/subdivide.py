"""Midpoint subdivision that remembers where every new vertex sits on the base mesh.

Each level splits every triangle into four. Every child triangle lies inside
one base triangle, so each of its corners is stored as barycentric weights of
that base triangle: the network, continuous over the surface, is then queried
at (base face, barycentric) points. The original vertices come first, in order.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Subdivision(NamedTuple):
  """A subdivided mesh located on its base mesh.

  faces: [F',3] the subdivided mesh's faces.
  face_ids, bary: [V'] and [V',3], every new vertex as a point of the base mesh.
  face_base: [F'] the base face each new face lies in.
  corner_bary: [F',3,3] each new face's corners as barycentrics of that base face.
  """
  faces: np.ndarray
  face_ids: np.ndarray
  bary: np.ndarray
  face_base: np.ndarray
  corner_bary: np.ndarray

  def corner_values(self, base_corner_values: np.ndarray) -> np.ndarray:
    """Per-corner values [F,3,C] of the base mesh (e.g. seamed UVs) -> [F',3,C]."""
    return np.einsum("fcj,fjd->fcd", self.corner_bary,
                     base_corner_values[self.face_base]).astype(base_corner_values.dtype)


def subdivide(faces: np.ndarray, levels: int) -> Subdivision:
  """Splits every triangle of `faces` ([F,3]) into four, `levels` times."""
  faces = np.asarray(faces, np.int64)
  num_v = int(faces.max()) + 1
  base = np.arange(len(faces))  # base face of each current face
  corner = np.broadcast_to(np.eye(3), (len(faces), 3, 3)).copy()  # [F,3 corners,3 weights]
  for _ in range(levels):
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, inverse = np.unique(edges, axis=0, return_inverse=True)
    mid = num_v + inverse.ravel().reshape(3, -1).T  # [F,3]: midpoints of edges 01, 12, 20
    num_v += int(inverse.max()) + 1
    c0, c1, c2 = corner[:, 0], corner[:, 1], corner[:, 2]
    m01, m12, m20 = 0.5 * (c0 + c1), 0.5 * (c1 + c2), 0.5 * (c2 + c0)
    faces = np.concatenate([
        np.stack([faces[:, 0], mid[:, 0], mid[:, 2]], 1),
        np.stack([faces[:, 1], mid[:, 1], mid[:, 0]], 1),
        np.stack([faces[:, 2], mid[:, 2], mid[:, 1]], 1),
        mid])
    corner = np.concatenate([np.stack([c0, m01, m20], 1), np.stack([c1, m12, m01], 1),
                             np.stack([c2, m20, m12], 1), np.stack([m01, m12, m20], 1)])
    base = np.tile(base, 4)
  # Every vertex is placed through the lowest-numbered base face around it, the
  # rule MeshAssets.vertex_points follows, so a vertex on a UV seam takes the
  # same island's UV at every level (and level 0 equals vertex_points).
  order = np.argsort(base, kind="stable")
  used, first = np.unique(faces[order].reshape(-1), return_index=True)
  child, c = order[first // 3], first % 3
  face_ids = np.zeros(num_v, np.int32)
  bary = np.zeros((num_v, 3), np.float32)
  face_ids[used] = base[child]
  bary[used] = corner[child, c]
  return Subdivision(faces.astype(np.int32), face_ids, bary, base.astype(np.int32),
                     corner.astype(np.float32))
