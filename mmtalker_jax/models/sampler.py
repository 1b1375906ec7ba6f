"""Differentiable non-uniform sampling of surface points over triangles.

The face distribution mixes the learned one with a floor of area-uniform
sampling:

  p = (1 - epsilon) q + epsilon p_area,   q = softmax(logits / temperature)
                                            (q = p_area in 'area' mode),

so every importance weight w = p_area / p is at most 1 / epsilon. Faces are
drawn i.i.d. and exactly (up to float rounding of the two cumulative sums) by
inverting the distribution in two levels: a block of about sqrt(F) faces
from the blocks' total probabilities, then a face of that block from its
share in it. Each point costs two uniform numbers and two binary searches of
about sqrt(F) entries, instead of the F Gumbel numbers of a flat Gumbel-max
(measured in bench/model.py). Each point draws from its own key (the sample
key folded with the point's index), so the first K points of a larger draw
are the K points of a smaller one. Points are uniform inside their
triangles (square-root trick).

All settings (temperature, epsilon, the mode) are traced values, so one
compiled program serves any of them, and `jax.vmap` maps over them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


MODES = ("learned", "area")


class SamplerSettings(NamedTuple):
  """How a training step samples the surface (`config.sampler`; scalars or traced arrays).

  temperature: q = softmax(logits / temperature).
  epsilon: the area-uniform floor in [0, 1): weights are at most 1 / epsilon.
  learned: True for the learned q, False for area-uniform sampling.
  alpha: the point loss weighs errors by (p_area / p) ** alpha: 1 is the
    unbiased area-uniform objective, 0 the error where the points fall.
  """
  temperature: float
  epsilon: float
  learned: bool
  alpha: float


def sampler_settings(cfg) -> SamplerSettings:
  """SamplerSettings from a `sampler` config section, checked.

  Raises:
    ValueError: naming the bad field.
  """
  if cfg.mode not in MODES:
    raise ValueError(f"sampler.mode must be one of {MODES}, not {cfg.mode!r}")
  if not 0.0 <= float(cfg.epsilon) < 1.0:
    raise ValueError(f"sampler.epsilon must be in [0, 1), not {cfg.epsilon}")
  if float(cfg.temperature) <= 0 or float(cfg.alpha) < 0:
    raise ValueError("sampler.temperature must be > 0 and sampler.alpha >= 0")
  if cfg.mode == "area" and float(cfg.epsilon) > 0:
    raise ValueError("sampler.epsilon mixes area sampling into learned sampling; "
                     "use 0 with mode 'area'")
  return SamplerSettings(float(cfg.temperature), float(cfg.epsilon), cfg.mode == "learned",
                         float(cfg.alpha))


class SurfaceSample(NamedTuple):
  """K surface points.

  face_ids: [K] int32; bary: [K,3] float32; weights: [K] float32 importance
  weights p_area/p (no gradient); log_p: [K] log p(face) (differentiable in the
  logits: the objective's surrogate term uses it, see `losses.density_surrogate`).
  """
  face_ids: jnp.ndarray
  bary: jnp.ndarray
  weights: jnp.ndarray
  log_p: jnp.ndarray


def area_logits(areas: np.ndarray, temperature: float = 1.0) -> np.ndarray:
  """Logits whose softmax at `temperature` samples faces uniformly by area."""
  areas = np.asarray(areas, np.float64)
  return (temperature * np.log(np.maximum(areas, 1e-30) / areas.sum())).astype(np.float32)


def face_log_probs(logits: jnp.ndarray, areas: jnp.ndarray, temperature=1.0, epsilon=0.0,
                   learned=True) -> jnp.ndarray:
  """[F] log p of the sampling distribution (see the module docstring).

  Args:
    logits: [F] face logits.
    areas: [F] face areas (>= 0).
    temperature: q = softmax(logits / temperature).
    epsilon: the area-uniform floor, in [0, 1).
    learned: True for q from the logits, False for q = p_area (a traced bool).
  """
  log_area = jnp.log(areas / jnp.sum(areas))
  log_q = jnp.where(learned, jax.nn.log_softmax(logits / temperature), log_area)
  return jnp.logaddexp(jnp.log1p(-epsilon) + log_q, jnp.log(epsilon) + log_area)


def draw_faces(log_p: jnp.ndarray, key: jax.Array, num_points: int) -> jnp.ndarray:
  """[K] int32 faces drawn i.i.d. from exp(log_p) by two-level inversion.

  Point k uses key fold_in(key, k) alone, so draws are prefix-stable in K.
  """
  f = log_p.shape[-1]
  block = max(1, math.isqrt(f - 1) + 1)  # ceil(sqrt(F))
  blocks = -(-f // block)
  table = jnp.pad(log_p, (0, blocks * block - f), constant_values=-jnp.inf).reshape(blocks, block)
  block_log_p = jax.nn.logsumexp(table, axis=1)  # [blocks]
  block_cdf = jnp.cumsum(jnp.exp(block_log_p - jax.nn.logsumexp(block_log_p)))  # [blocks]
  inner_cdf = jnp.cumsum(jnp.exp(table - block_log_p[:, None]), axis=1)  # [blocks, block]
  u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(key, k), (2,)))(
      jnp.arange(num_points))  # [K,2]
  # First entry whose cumulative sum exceeds u (zero-probability entries never are).
  b = jnp.minimum(jnp.searchsorted(block_cdf, u[:, 0] * block_cdf[-1], side="right"),
                  blocks - 1)
  rows = inner_cdf[b]  # [K, block]
  i = jnp.minimum(jax.vmap(lambda r, x: jnp.searchsorted(r, x * r[-1], side="right"))(rows, u[:, 1]),
                  block - 1)
  return jnp.minimum(b * block + i, f - 1).astype(jnp.int32)


def uniform_barycentrics(key: jax.Array, num_points: int) -> jnp.ndarray:
  """[K,3] points uniform in a triangle (square-root trick); point k from fold_in(key, k)."""
  r = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(key, k), (2,)))(
      jnp.arange(num_points))
  s = jnp.sqrt(r[:, 0])
  return jnp.stack([1.0 - s, s * (1.0 - r[:, 1]), s * r[:, 1]], axis=-1)


def sample_triangles(logits: jnp.ndarray, areas: jnp.ndarray, key: jax.Array,
                     num_points: int, temperature=1.0, epsilon=0.0,
                     learned=True) -> SurfaceSample:
  """Draws `num_points` surface points.

  Usable under jit (num_points static) and vmap over keys, logits and settings.

  Args:
    logits: [F] face logits.
    areas: [F] face areas (>= 0).
    key: PRNG key.
    num_points: K.
    temperature, epsilon, learned: as in `face_log_probs` (traced).

  Returns:
    SurfaceSample with face_ids [K], bary [K,3], weights [K], log_p [K].
  """
  face_key, bary_key = jax.random.split(key)
  log_p = face_log_probs(logits, areas, temperature, epsilon, learned)
  face_ids = draw_faces(jax.lax.stop_gradient(log_p), face_key, num_points)
  bary = uniform_barycentrics(bary_key, num_points)
  point_log_p = log_p[face_ids]
  log_area = jnp.log(areas[face_ids] / jnp.sum(areas))
  weights = jnp.exp(log_area - jax.lax.stop_gradient(point_log_p))
  return SurfaceSample(face_ids, bary, weights, point_log_p)
