"""Speech to animation with a restored model, at any length and resolution.

The sequence is encoded in one call (time and memory linear in its length:
the temporal attention is local), padded to a length bucket so a new length
rarely recompiles; the per-frame regressor then runs over fixed-size chunks
of frames. Frames do not interact in the regressor, so chunking changes
nothing in the result: there is no seam to hide.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from mmtalker_jax.data import audio as audio_lib
from mmtalker_jax.errors import InputError
from mmtalker_jax.training.restore import Restored


def num_frames_for(num_samples: int, sample_rate: int, fps: float) -> int:
  """Mesh frames for audio of `num_samples`: duration x fps, rounded half up.

  Raises:
    ValueError: if the audio is shorter than one frame.
  """
  frames = num_samples * fps / sample_rate
  if frames < 1:
    raise ValueError(f"audio lasts {num_samples / sample_rate * 1000:.1f} ms, shorter than "
                     f"one frame ({1000 / fps:.1f} ms at {fps:g} fps)")
  return int(math.floor(frames + 0.5))


class Predictor:
  """Animates speech with a restored checkpoint.

  Args:
    run: the restored checkpoint (with its templates).
    chunk_frames: frames per regressor call (default: config.predict's).
    length_bucket: encoder inputs are padded to a multiple of this many frames
      (default: config.predict's).
  """

  def __init__(self, run: Restored, chunk_frames: int | None = None,
               length_bucket: int | None = None):
    settings = run.config.get("predict", {})
    self.run = run
    self.model = run.model
    self.chunk = int(chunk_frames or settings.get("chunk_frames", 64))
    self.bucket = int(length_bucket or settings.get("length_bucket", 64))
    self.features = dict(run.config.data.features)
    self.fps = float(run.config.data.fps)
    model = self.model
    self._encode = jax.jit(lambda p, *x: model.apply({"params": p}, *x, method=model.encode))
    self._points = jax.jit(lambda p, enc, f, b: model.apply(
        {"params": p}, enc, f, b, method=model.encode_points))
    self._frames = jax.jit(lambda p, pts, motion, m: model.apply(
        {"params": p}, pts, motion, m, method=model.decode_frames))

  @property
  def styles(self) -> list[str]:
    return self.run.styles

  def style_index(self, style: str | None) -> int:
    """Index of a training subject's style (default: the first).

    Raises:
      InputError: for an unknown style, listing the known ones.
    """
    if style is None:
      return 0
    if style not in self.styles:
      raise InputError("", f"unknown style {style!r}; known styles: {', '.join(self.styles)}")
    return self.styles.index(style)

  def template(self, style: str | None) -> np.ndarray:
    """[V,3] the neutral face animated: the style subject's own template."""
    subject = self.styles[self.style_index(style)]
    return self.run.templates.get(subject, self.model.assets.vertices)

  def animate(self, audio: np.ndarray, style: str | None = None,
              points: tuple[np.ndarray, np.ndarray] | None = None,
              template: np.ndarray | None = None) -> np.ndarray:
    """Vertices over time for 16 kHz mono `audio`.

    Args:
      audio: [S] float32 at the config's sample rate.
      style: a training subject's name (default: the first).
      points: (face_ids [K], bary [K,3]) to predict at; default every vertex.
      template: [V,3] neutral face; default the style subject's template.

    Returns:
      [T,K,3] float32, T = num_frames_for(S).
    """
    sr = int(self.features["sample_rate"])
    t = num_frames_for(len(audio), sr, self.fps)
    t_pad = -(-t // self.bucket) * self.bucket
    mel = audio_lib.log_mel(audio, t, self.fps, self.features)
    n_feat = audio_lib.num_feature_frames(t_pad, self.fps, self.model.feature_rate)
    mel = np.pad(mel, ((0, n_feat - len(mel)), (0, 0)))[None]
    mask = np.zeros((1, t_pad), np.float32)
    mask[0, :t] = 1
    if template is None:
      template = self.template(style)
    style_id = np.array([self.style_index(style)], np.int32)
    if points is None:
      points = self.model.assets.vertex_points()
    face_ids, bary = jnp.asarray(points[0]), jnp.asarray(points[1])
    params = self.run.params
    encoded = self._encode(params, mel, template[None].astype(np.float32), style_id, mask)
    at_points = self._points(params, encoded, face_ids, bary)
    base = np.asarray(at_points["template"])[0]
    out = np.empty((t, len(points[0]), 3), np.float32)
    for c0 in range(0, t, self.chunk):
      c1 = min(c0 + self.chunk, t)
      motion = encoded["motion"][:, c0:c0 + self.chunk]
      chunk_mask = mask[:, c0:c0 + self.chunk]
      if motion.shape[1] < self.chunk:  # keep one compiled chunk shape
        pad = self.chunk - motion.shape[1]
        motion = jnp.pad(motion, ((0, 0), (0, pad), (0, 0)))
        chunk_mask = np.pad(chunk_mask, ((0, 0), (0, pad)))
      disp = self._frames(params, at_points, motion, chunk_mask)
      out[c0:c1] = base[None] + np.asarray(disp[0, :c1 - c0])
    return out
