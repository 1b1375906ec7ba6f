"""Differentiable non-uniform sampling of surface points over triangles.

A learnable logit per face defines p(face) = softmax(logits / temperature).
Faces are drawn Gumbel-max style (argmax of logits plus Gumbel noise, one draw
per point, with replacement) and points uniformly inside each drawn triangle
(square-root trick). Each point carries the importance weight
w = p_area(face) / p(face), so the weighted mean of any per-point quantity is an
unbiased estimate of its area-weighted mean over the surface, wherever the
samples concentrate.

The gradient reaches the logits through w: for a per-point error e >= 0, the
expected gradient of mean(w * e) is that of the cross-entropy
-sum_f p_area(f) e(f) log p(f), minimised by p proportional to p_area * e, the
importance distribution of least variance. Samples thus move to where the error
is, while the loss estimate stays unbiased.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class SurfaceSample(NamedTuple):
  """K surface points.

  face_ids: [K] int32; bary: [K,3] float32; weights: [K] float32 importance
  weights p_area/p (differentiable in the logits).
  """
  face_ids: jnp.ndarray
  bary: jnp.ndarray
  weights: jnp.ndarray


def area_logits(areas: np.ndarray, temperature: float = 1.0) -> np.ndarray:
  """Logits whose softmax at `temperature` samples faces uniformly by area."""
  areas = np.asarray(areas, np.float64)
  return (temperature * np.log(np.maximum(areas, 1e-30) / areas.sum())).astype(np.float32)


def sample_triangles(logits: jnp.ndarray, areas: jnp.ndarray, key: jax.Array,
                     num_points: int, temperature: float = 1.0) -> SurfaceSample:
  """Draws `num_points` surface points.

  Usable under jit (num_points static) and vmap over keys and logits.

  Args:
    logits: [F] face logits.
    areas: [F] face areas (>= 0).
    key: PRNG key.
    num_points: K.
    temperature: p = softmax(logits / temperature).

  Returns:
    SurfaceSample with face_ids [K], bary [K,3], weights [K].
  """
  face_key, bary_key = jax.random.split(key)
  scaled = logits / temperature
  gumbel = jax.random.gumbel(face_key, (num_points, logits.shape[-1]), scaled.dtype)
  face_ids = jnp.argmax(jax.lax.stop_gradient(scaled) + gumbel, axis=-1).astype(jnp.int32)
  r = jax.random.uniform(bary_key, (num_points, 2), jnp.float32)
  s = jnp.sqrt(r[:, 0])
  bary = jnp.stack([1.0 - s, s * (1.0 - r[:, 1]), s * r[:, 1]], axis=-1)
  log_p = jax.nn.log_softmax(scaled)[face_ids]
  log_area = jnp.log(areas[face_ids] / jnp.sum(areas))
  return SurfaceSample(face_ids, bary, jnp.exp(log_area - log_p))
