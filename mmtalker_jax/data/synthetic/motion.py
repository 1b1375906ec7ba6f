"""Face motion of SynthTalk, driven by the same timeline as the speech."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.ndimage

from mmtalker_jax.data.synthetic import phones as ph
from mmtalker_jax.data.synthetic.face import MOTION_FIELDS

_RATE = 1000  # articulation is computed at 1 kHz, then sampled at frame centres


class Style(NamedTuple):
  """A subject's speaking style: a gain per motion field, in MOTION_FIELDS order."""
  gains: tuple[float, ...]


def random_style(rng: np.random.Generator) -> Style:
  gains = rng.uniform(0.7, 1.3, size=len(MOTION_FIELDS))
  gains[MOTION_FIELDS.index("close")] = 1.0  # lips that close, close fully
  return Style(tuple(float(g) for g in gains))


def articulation(timeline: ph.Timeline, num_frames: int, fps: float) -> np.ndarray:
  """Articulation coefficients at mesh frame centres, [T,P] float32.

  Coarticulation: per-phone targets smoothed over ~40 ms, so each phone bleeds
  into its neighbours; bilabial closure is sharper. Brows rise on accented
  vowels; the eyes blink in pauses of 150 ms or more.
  """
  t = np.arange(int(np.ceil(timeline.duration * _RATE)) + 1) / _RATE
  smooth = lambda x, ms: scipy.ndimage.gaussian_filter1d(x, ms * _RATE / 1000, mode="nearest")
  target = lambda attr: ph.piecewise(timeline, ph.phone_attribute(timeline, attr), t)
  close = smooth(target("close"), 12)
  jaw = smooth(target("jaw"), 35) * (1 - 0.9 * close)
  rnd = smooth(target("round"), 45)
  spread = smooth(target("spread"), 40) * (1 - rnd)
  brow = np.zeros_like(t)
  blink = np.zeros_like(t)
  for i, p in enumerate(timeline.phones):
    centre = 0.5 * (timeline.start[i] + timeline.end[i])
    if timeline.accents[i]:
      brow += np.exp(-0.5 * ((t - centre - 0.05) / 0.12) ** 2)
    if p == ph.PAUSE and timeline.end[i] - timeline.start[i] >= 0.15:
      blink += np.exp(-0.5 * ((t - centre) / 0.045) ** 2)
  detail = jaw * (1 - rnd)
  coeffs = np.stack([jaw, rnd, spread, close, np.minimum(brow, 1.0),
                     np.minimum(blink, 1.0), detail], axis=1)
  frame_centres = (np.arange(num_frames) + 0.5) / fps
  idx = np.clip(np.round(frame_centres * _RATE).astype(int), 0, len(t) - 1)
  return coeffs[idx].astype(np.float32)


def animate(template: np.ndarray, fields: np.ndarray, coeffs: np.ndarray,
            style: Style) -> np.ndarray:
  """Vertices over time.

  Args:
    template: [V,3] neutral face.
    fields: [P,V,3] motion fields.
    coeffs: [T,P] articulation.
    style: per-field gains.

  Returns:
    [T,V,3] float32.
  """
  weighted = coeffs * np.asarray(style.gains, np.float32)
  disp = np.tensordot(weighted, fields, axes=(1, 0))
  return (template[None] + disp).astype(np.float32)
