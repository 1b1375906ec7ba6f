"""Training losses. Each takes predictions and targets with masks and returns a scalar.

Padded frames and masked points never enter a mean.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _frame_point_mean(err: jnp.ndarray, frame_mask: jnp.ndarray, point_weights: jnp.ndarray,
                      point_mask: jnp.ndarray | None) -> jnp.ndarray:
  """Mean of err [B,T,K] over real frames and unmasked points, points weighted.

  point_weights: [K] (the same points in every row) or [B,K] (points per row).
  """
  pm = jnp.ones(err.shape[-1], err.dtype) if point_mask is None else point_mask.astype(err.dtype)
  spec = "btk,bt,k->" if point_weights.ndim == 1 else "btk,bt,bk->"
  total = jnp.einsum(spec, err, frame_mask.astype(err.dtype), point_weights * pm)
  count = jnp.sum(frame_mask) * jnp.sum(pm)
  return total / jnp.maximum(count, 1.0)


def point_mse(pred: jnp.ndarray, target: jnp.ndarray, weights: jnp.ndarray,
              frame_mask: jnp.ndarray, point_mask: jnp.ndarray | None = None) -> jnp.ndarray:
  """Weighted squared error at sampled surface points.

  With weights (p_area / p) ** alpha: alpha = 1 makes this an unbiased estimate
  of the area-weighted mean squared error over the surface (the density only
  lowers its variance); alpha = 0 is the error where the points fall (the
  density decides what is fitted). The weights carry no gradient: the logits
  learn from `density_surrogate`.

  Args:
    pred, target: [B,T,K,3].
    weights: [K] loss weights ([B,K] with points per row).
    frame_mask: [B,T].
    point_mask: [K] 1 for points that count (for sweeps over K), or None.

  Returns:
    Scalar: mean over real frames and points of w_k * ||pred - target||^2.
  """
  err = jnp.sum((pred - target) ** 2, axis=-1)
  return _frame_point_mean(err, frame_mask, jax.lax.stop_gradient(weights), point_mask)


def density_surrogate(pred: jnp.ndarray, target: jnp.ndarray, importance: jnp.ndarray,
                      log_p: jnp.ndarray, frame_mask: jnp.ndarray,
                      point_mask: jnp.ndarray | None = None) -> jnp.ndarray:
  """A term whose value is 0 and whose gradient trains the sampling logits.

  Its gradient is an unbiased estimate of that of the cross-entropy
  -sum_f p_area(f) e(f) log p(f) (e: the mean squared error on face f), which
  p proportional to p_area * e minimises: the importance distribution of
  least variance. Samples move to where the error is, whatever alpha the
  point loss uses. (With alpha = 1 this is exactly the gradient the logits
  would get through differentiable weights p_area / p.)

  Args:
    pred, target: [B,T,K,3] (no gradient is taken through them).
    importance: [K] (or [B,K]) p_area / p.
    log_p: [K] (or [B,K]) log p(face) of each point, differentiable in the logits.
    frame_mask: [B,T].
    point_mask: [K] or None.

  Returns:
    Scalar 0 with the gradient described.
  """
  err = jax.lax.stop_gradient(jnp.sum((pred - target) ** 2, axis=-1))
  term = _frame_point_mean(err, frame_mask, -jax.lax.stop_gradient(importance) * log_p,
                           point_mask)
  return term - jax.lax.stop_gradient(term)


def velocity_loss(pred: jnp.ndarray, target: jnp.ndarray, frame_mask: jnp.ndarray,
                  weights: jnp.ndarray | None = None,
                  point_mask: jnp.ndarray | None = None) -> jnp.ndarray:
  """Squared error of frame-to-frame differences, over pairs of real frames.

  Args:
    pred, target: [B,T,K,3].
    frame_mask: [B,T].
    weights: [K] (or [B,K]) importance weights or None (all ones).
    point_mask: [K] or None.

  Returns:
    Scalar.
  """
  dp = pred[:, 1:] - pred[:, :-1]
  dt = target[:, 1:] - target[:, :-1]
  pair = frame_mask[:, 1:] * frame_mask[:, :-1]
  err = jnp.sum((dp - dt) ** 2, axis=-1)
  w = jnp.ones(err.shape[-1], err.dtype) if weights is None else jax.lax.stop_gradient(weights)
  return _frame_point_mean(err, pair, w, point_mask)


def vertex_mse(pred: jnp.ndarray, target: jnp.ndarray, frame_mask: jnp.ndarray) -> jnp.ndarray:
  """Plain squared error over all vertices, [B,T,V,3] each; mean over real frames and vertices."""
  err = jnp.sum((pred - target) ** 2, axis=-1)
  return _frame_point_mean(err, frame_mask, jnp.ones(err.shape[-1], err.dtype), None)
