"""UV parameterization for template meshes that ship without UVs.

A disk-like face mesh is flattened with Tutte's embedding: the longest boundary
loop is pinned to a circle by arc length and every other vertex sits at the
average of its neighbours (a sparse Laplace solve). For a disk with a convex
boundary this is a bijection, so every surface point has one UV.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import connected_components

from mmtalker_jax.mesh.graph import boundary_loops, unique_edges


class NotParameterizable(ValueError):
  """The mesh is not disk-like (closed, several pieces, handles, non-manifold)."""


def disk_parameterization(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
  """Maps a disk-like triangle mesh to the unit square.

  Inner boundary loops (eye or mouth holes) are allowed; they float freely.

  Args:
    vertices: [V,3] positions.
    faces: [F,3] vertex indices.

  Returns:
    uv: [V,2] float32 in [0,1]^2 (the boundary touches the circle of radius
    0.5 around (0.5, 0.5)).

  Raises:
    NotParameterizable: with the reason.
  """
  num_v = len(vertices)
  used = np.zeros(num_v, bool)
  used[faces.ravel()] = True
  if not used.all():
    raise NotParameterizable(
        f"{int((~used).sum())} vertices belong to no face")
  edges = unique_edges(faces)
  adj = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                      shape=(num_v, num_v))
  adj = (adj + adj.T).tocsr()
  n_comp, _ = connected_components(adj, directed=False)
  if n_comp != 1:
    raise NotParameterizable(f"the mesh has {n_comp} separate pieces, expected one")
  try:
    loops = boundary_loops(faces)
  except ValueError as e:
    raise NotParameterizable(str(e)) from None
  if not loops:
    raise NotParameterizable("the mesh is closed (no boundary); a face mesh "
                             "needs an open boundary to be flattened")
  euler = num_v - len(edges) + len(faces)
  genus2 = 2 - len(loops) - euler
  if genus2 != 0:
    raise NotParameterizable(f"the mesh has handles (genus {genus2 / 2:g}); "
                             "only disk-like meshes can be flattened")

  outer = loops[0]
  seg = np.linalg.norm(vertices[np.roll(outer, -1)] - vertices[outer], axis=1)
  angle = 2 * np.pi * np.concatenate([[0.0], np.cumsum(seg)[:-1]]) / seg.sum()
  pinned = np.zeros(num_v, bool)
  pinned[outer] = True
  uv = np.zeros((num_v, 2))
  uv[outer] = np.stack([np.cos(angle), np.sin(angle)], axis=1)

  degree = np.asarray(adj.sum(axis=1)).ravel()
  laplacian = (sp.diags(degree) - adj).tocsr()
  free = ~pinned
  lhs = laplacian[free][:, free].tocsc()
  rhs = -laplacian[free][:, pinned] @ uv[pinned]
  solve = spla.factorized(lhs)
  uv[free] = np.stack([solve(rhs[:, 0]), solve(rhs[:, 1])], axis=1)
  return (0.5 + 0.5 * uv).astype(np.float32)
