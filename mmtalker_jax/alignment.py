"""Time alignment between mesh frames and audio-feature frames.

Mesh frame t covers audio [t/fps, (t+1)/fps). Feature frame j is a window
centred at c_j = (j + 0.5) / feature_rate seconds and belongs to mesh frame
floor(c_j * fps). A sequence of T mesh frames has the features whose centres
fall before T / fps. The rates need not divide: 100 Hz features under 30 fps
meshes give 3 or 4 features per frame. Data and models both depend on this
rule, so it lives here, below both.
"""

from __future__ import annotations

import fractions
import math

import numpy as np


def num_feature_frames(num_frames: int, fps: float, feature_rate: float) -> int:
  """Feature frames whose centres fall within the first `num_frames` mesh frames."""
  return max(0, math.ceil(num_frames * feature_rate / fps - 0.5))


def feature_to_frame(num_features: int, fps: float, feature_rate: float) -> np.ndarray:
  """[num_features] int32: the mesh frame each feature frame belongs to."""
  centres = (np.arange(num_features) + 0.5) / feature_rate
  return np.floor(centres * fps + 1e-9).astype(np.int32)


def crop_stride(fps: float, feature_rate: float) -> int:
  """Smallest frame step s such that s frames span a whole number of feature frames.

  Crops that start at a multiple of s keep the feature/frame mapping exact.
  """
  ratio = fractions.Fraction(feature_rate).limit_denominator(10_000) / \
      fractions.Fraction(fps).limit_denominator(10_000)
  return ratio.denominator
