"""Lip closure at bilabial key frames: where key motions should help most.

At /p b m/ the lips meet. The check measures the lip opening of the
prediction and of the truth at every bilabial key frame (keymotion/visemes.py)
and averages |opening_pred - opening_true| (data units; `evaluate.py
--bilabial` reports it in millimetres for metre-unit corpora).

The opening of a frame is the vertical distance between the mean of the upper
lip and the mean of the lower lip near the midline: the lip region's vertices
(regions['lips']) within a quarter of the region's width of its centre,
split by height at the centre. The template's y axis is taken as up (as in
FLAME, BIWI and SynthTalk).
"""

from __future__ import annotations

import numpy as np

from mmtalker_jax.keymotion.visemes import KEY_VISEMES

BILABIAL = 1 + KEY_VISEMES.index("bilabial")  # its code in a key_visemes track


def lip_bands(template: np.ndarray, lips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(upper, lower) vertex indices of the lips' midline band.

  Args:
    template: [V,3] the neutral face.
    lips: lip-region vertex indices.

  Raises:
    ValueError: if either band is empty (a lip region without vertices above
      and below its centre near the midline).
  """
  lips = np.asarray(lips)
  p = template[lips]
  centre = p.mean(axis=0)
  half = 0.25 * (p[:, 0].max() - p[:, 0].min())
  band = np.abs(p[:, 0] - centre[0]) <= half
  upper, lower = lips[band & (p[:, 1] > centre[1])], lips[band & (p[:, 1] < centre[1])]
  if not len(upper) or not len(lower):
    raise ValueError("the lip region has no vertices above and below its centre near the "
                     "midline; the closure check needs both lips")
  return upper, lower


def lip_opening(vertices: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
  """[T] vertical distance between the upper and lower lip bands of [T,V,3] frames."""
  return vertices[:, upper, 1].mean(-1) - vertices[:, lower, 1].mean(-1)


class ClosureAccumulator:
  """Mean |opening_pred - opening_true| over the bilabial key frames of many sequences."""

  def __init__(self, upper: np.ndarray, lower: np.ndarray):
    self.upper, self.lower = upper, lower
    self.total, self.frames = 0.0, 0

  def add(self, pred: np.ndarray, gt: np.ndarray, key_visemes: np.ndarray) -> None:
    """pred, gt: [T,V,3]; key_visemes: [T] (`visemes.key_track`)."""
    at = np.flatnonzero(np.asarray(key_visemes)[:len(gt)] == BILABIAL)
    if len(at):
      error = lip_opening(pred[at], self.upper, self.lower) - lip_opening(
          gt[at], self.upper, self.lower)
      self.total += float(np.abs(error).sum())
      self.frames += len(at)

  def result(self) -> float:
    return self.total / self.frames if self.frames else float("nan")
