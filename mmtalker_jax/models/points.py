"""Surface points: (face id, barycentric) pairs and what lives at them.

Fixed points (every vertex) come as numpy arrays, and then the index work on
the topology (which corners, which UVs) is done here in numpy, once per
trace: inside the step it would be a gather over constants that XLA folds at
every compile.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def interpolate(values: jnp.ndarray, faces: np.ndarray, face_ids: jnp.ndarray,
                bary: jnp.ndarray) -> jnp.ndarray:
  """Barycentric blend of per-vertex values at surface points.

  Args:
    values: [..., V, C] per-vertex values (vertex axis second to last).
    faces: [F,3] int topology.
    face_ids: [K] int face of each point, shared by every leading index; or
      [B,K], a set of points for each row of values [B, ..., V, C].
    bary: [K,3] (or [B,K,3]) barycentric weights (rows sum to 1).

  Returns:
    [..., K, C].
  """
  if face_ids.ndim == 2:
    return jax.vmap(lambda v, f, w: interpolate(v, faces, f, w))(values, face_ids, bary)
  corners = _rows(faces, face_ids)  # [K,3]
  gathered = jnp.take(values, corners, axis=-2)  # [..., K, 3, C]
  return jnp.einsum("...kjc,kj->...kc", gathered, jnp.asarray(bary).astype(values.dtype))


def interpolate_corners(corner_values: jnp.ndarray, face_ids: jnp.ndarray,
                        bary: jnp.ndarray) -> jnp.ndarray:
  """Barycentric blend of per-corner values (e.g. UVs across seams) at surface points.

  Args:
    corner_values: [F,3,C] a value at each corner of each face.
    face_ids: [..., K] int face of each point.
    bary: [..., K,3] barycentric weights.

  Returns:
    [..., K,C].
  """
  return jnp.einsum("...kjc,...kj->...kc", _rows(corner_values, face_ids),
                    jnp.asarray(bary).astype(corner_values.dtype))


def _rows(table: np.ndarray, ids) -> jnp.ndarray:
  """table[ids]: in numpy for fixed (numpy) ids, else a gather in the program."""
  if isinstance(ids, np.ndarray):
    return np.asarray(table)[ids]
  return jnp.asarray(table)[ids]


def fourier_features(uv: jnp.ndarray, num_frequencies: int) -> jnp.ndarray:
  """[..., 2] UV in [0,1] -> [..., 2 + 4 * num_frequencies] (uv, sin, cos at octaves)."""
  freqs = (2.0 ** jnp.arange(num_frequencies)) * jnp.pi
  angles = uv[..., None] * freqs  # [..., 2, n]
  angles = angles.reshape(*uv.shape[:-1], -1)
  return jnp.concatenate([uv, jnp.sin(angles), jnp.cos(angles)], axis=-1)
