"""Evaluation metrics, exactly as the community's evaluation code computes them.

Every function takes `pred` and `gt` as [N,T,V,3] arrays (numpy or jax), an
optional `mask` [N,T] with 1 on real frames (padding never enters a mean), and
returns a Python float in the data's own units: no reporting scale applied.
Prediction and ground truth must already be cut to the same length.
"""

from __future__ import annotations

import numpy as np

ArrayLike = np.ndarray


def _prepare(pred, gt, mask):
  pred = np.asarray(pred, np.float64)
  gt = np.asarray(gt, np.float64)
  if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[-1] != 3:
    raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be [N,T,V,3]")
  if mask is None:
    mask = np.ones(pred.shape[:2], bool)
  mask = np.asarray(mask).astype(bool)
  if mask.shape != pred.shape[:2]:
    raise ValueError(f"mask {mask.shape} must be [N,T] = {pred.shape[:2]}")
  return pred, gt, mask


def _max_region_error(pred, gt, idx, mask) -> float:
  pred, gt, mask = _prepare(pred, gt, mask)
  idx = np.asarray(idx)
  sq = np.sum((pred[:, :, idx] - gt[:, :, idx]) ** 2, axis=-1)  # [N,T,n]
  per_frame = sq.max(axis=-1)  # [N,T]
  return float(per_frame[mask].mean())


def lve(pred, gt, lip_idx, mask=None) -> float:
  """Lip vertex error.

  Per frame, the maximum over lip vertices of the squared L2 distance (no
  square root); the mean of that over all real frames of all sequences pooled.
  """
  return _max_region_error(pred, gt, lip_idx, mask)


def eve(pred, gt, eye_idx, mask=None) -> float:
  """Eye-region vertex error: the LVE formula over eye-region vertices."""
  return _max_region_error(pred, gt, eye_idx, mask)


def mve(pred, gt, mask=None) -> float:
  """Mean vertex error: mean over real frames and all vertices of the L2 distance."""
  pred, gt, mask = _prepare(pred, gt, mask)
  dist = np.linalg.norm(pred - gt, axis=-1)  # [N,T,V]
  return float(dist[mask].mean())


def fdd_per_sequence(pred, gt, templates, upper_idx, mask=None) -> np.ndarray:
  """Upper-face dynamics deviation of each sequence, [N] float64.

  m_tv = ||x_tv - template_v||^2; sigma_v = population std over the real
  frames; FDD_s = mean over upper-face v of sigma_v(gt) - sigma_v(pred).
  Sequences without a real frame give NaN.
  """
  pred, gt, mask = _prepare(pred, gt, mask)
  templates = np.asarray(templates, np.float64)
  if templates.shape != (pred.shape[0],) + pred.shape[2:]:
    raise ValueError(f"templates {templates.shape} must be [N,V,3]")
  upper_idx = np.asarray(upper_idx)
  tmpl = templates[:, None, upper_idx]  # [N,1,n,3]
  out = np.full(pred.shape[0], np.nan)
  for s in range(pred.shape[0]):
    m = mask[s]
    if not m.any():
      continue
    motion_gt = np.sum((gt[s, m][:, upper_idx] - tmpl[s]) ** 2, axis=-1)  # [t,n]
    motion_pred = np.sum((pred[s, m][:, upper_idx] - tmpl[s]) ** 2, axis=-1)
    out[s] = np.mean(motion_gt.std(axis=0) - motion_pred.std(axis=0))
  return out


def fdd(pred, gt, templates, upper_idx, mask=None) -> float:
  """Upper-face dynamics deviation: the mean over sequences of the signed FDD_s."""
  return float(np.nanmean(fdd_per_sequence(pred, gt, templates, upper_idx, mask)))


def fdd_abs(pred, gt, templates, upper_idx, mask=None) -> float:
  """Mean over sequences of |FDD_s|."""
  return float(np.nanmean(np.abs(fdd_per_sequence(pred, gt, templates, upper_idx, mask))))
