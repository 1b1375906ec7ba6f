"""Key motions (KMTalk, arXiv 2409.01113) as parts of a network.

A run with `config.model.key_motion` other than 'none' reads two more batch
inputs (data/pipeline.py):

  key_visemes [B,T] int32    0 on ordinary frames, 1 + the index in
                             keymotion.visemes.KEY_VISEMES at a key frame
  key_motion  [B,T,V,3]      the true displacement at key frames, zero
                             elsewhere ('oracle' only)

and completes the motion between key frames from them:

  acquisition  (KMTalk's first module, 'predicted') the face's displacement
               at each key frame from its viseme, the audio there and the
               speaker's style, as J per-frame coefficients of J per-point
               displacement fields: pred(point, t) = basis(point) . coeff(t),
               trained on the true displacement at key frames (the step's
               'key_motion' loss); completion reads it without a gradient.
  guide        key motions interpolated in time: linear between two key
               frames, fading to zero over `fade_frames` before the first and
               after the last, zero with no key frame at all. Both the
               interpolation and the basis are linear, so the guide of the
               predicted key motions is the basis times the interpolated
               coefficients, a per-frame quantity decoded in chunks like the
               rest of the motion.
  gaps         [B,T,2]: frames since the previous key frame and to the next,
               over `gap_frames` and clipped to 1 (1: none within reach), so
               the network knows how far to trust the guide.
  gate         [B,T,1] (`GuideGate`): the network adds gate x guide to its own
               prediction; the gate starts at 1 and is learned from the gaps.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmtalker_jax.keymotion.visemes import KEY_VISEMES

MODES = ("none", "oracle", "predicted")
INPUTS = {"none": (), "oracle": ("key_visemes", "key_motion"), "predicted": ("key_visemes",)}


def check_mode(mode: str) -> str:
  if mode not in MODES:
    raise ValueError(f"config.model.key_motion={mode!r}: expected one of {', '.join(MODES)}")
  return mode


def given(mode: str, keys: dict | None) -> dict:
  """`keys` (None: {}) after checking it holds what `mode` reads.

  Raises:
    ValueError: naming the missing batch inputs.
  """
  keys = keys or {}
  missing = [k for k in INPUTS[check_mode(mode)] if k not in keys]
  if missing:
    raise ValueError(f"key_motion={mode!r} needs the batch inputs {missing}")
  return keys


def interpolation(key_visemes: jnp.ndarray, fade_frames: float, gap_frames: float
                  ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """Where each frame's guide comes from.

  Args:
    key_visemes: [B,T] int, > 0 at key frames.

  Returns:
    (left [B,T], right [B,T]) the previous and next key frame (clipped into
    [0, T)), (w_left, w_right) [B,T] their weights, and gaps [B,T,2].
    guide[t] = w_left[t] * key[left[t]] + w_right[t] * key[right[t]].
  """
  is_key = key_visemes > 0
  t = key_visemes.shape[1]
  idx = jnp.broadcast_to(jnp.arange(t), key_visemes.shape)
  left = jax.lax.cummax(jnp.where(is_key, idx, -1), axis=1)
  right = jax.lax.cummin(jnp.where(is_key, idx, t), axis=1, reverse=True)
  has_left, has_right = left >= 0, right < t
  since = (idx - left).astype(jnp.float32)
  until = (right - idx).astype(jnp.float32)
  span = jnp.maximum(right - left, 1).astype(jnp.float32)
  between = has_left & has_right
  fade = lambda d: jnp.clip(1.0 - d / fade_frames, 0.0, 1.0)
  w_right = jnp.where(between, since / span, jnp.where(has_right, fade(until), 0.0))
  w_left = jnp.where(between, 1.0 - since / span, jnp.where(has_left, fade(since), 0.0))
  gaps = jnp.stack([jnp.where(has_left, jnp.minimum(since / gap_frames, 1.0), 1.0),
                    jnp.where(has_right, jnp.minimum(until / gap_frames, 1.0), 1.0)], -1)
  return jnp.clip(left, 0, t - 1), jnp.clip(right, 0, t - 1), w_left, w_right, gaps


def interpolate_keys(values: jnp.ndarray, key_visemes: jnp.ndarray, fade_frames: float,
                     gap_frames: float) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(guide, gaps): `values` [B,T,...] (read at key frames only) interpolated in
  time as `interpolation` says, and the gaps [B,T,2]."""
  left, right, w_left, w_right, gaps = interpolation(key_visemes, fade_frames, gap_frames)

  def at(index, weight):
    shape = index.shape + (1,) * (values.ndim - 2)
    taken = jnp.take_along_axis(values, index.reshape(shape), axis=1)
    return taken * weight.reshape(shape).astype(values.dtype)

  return at(left, w_left) + at(right, w_right), gaps


class GuideGate(nn.Module):
  """How far each frame trusts the guide: [B,T,2] gaps -> [B,T,1], 1 + a
  zero-initialised linear map of the gaps. The network adds gate x guide to
  its own prediction; it starts at 1 (an untrained oracle network plays the
  key motions exactly) and learns to lean on the guide less where that helps
  (a predicted guide far from its key frames)."""

  @nn.compact
  def __call__(self, gaps: jnp.ndarray) -> jnp.ndarray:
    return 1.0 + nn.Dense(1, kernel_init=nn.initializers.zeros)(gaps)


class KeyAcquisition(nn.Module):
  """The per-frame half of key-motion acquisition: coefficients [B,T,J] of a
  frame's key displacement from (viseme, audio, style) there.

  Attributes:
    rank: J, the displacement fields the per-point half (`KeyBasis`) holds.
    hidden: width of the one hidden layer.
  """
  rank: int
  hidden: int

  @nn.compact
  def __call__(self, key_visemes: jnp.ndarray, audio: jnp.ndarray,
               style: jnp.ndarray) -> jnp.ndarray:
    """key_visemes [B,T] int; audio [B,T,D] frame-rate audio features; style
    [B,D] the style embedding -> [B,T,J]."""
    viseme = nn.Embed(len(KEY_VISEMES) + 1, self.hidden)(key_visemes)
    h = viseme + nn.Dense(self.hidden)(audio) + nn.Dense(self.hidden)(style)[:, None]
    return nn.Dense(self.rank)(jax.nn.gelu(h))


class KeyBasis(nn.Module):
  """The per-point half: J displacement fields [B,K,J,3] from per-point
  features. The fields start at zero, so an untrained acquisition guides
  nothing (rather than adding noise to the prediction)."""
  rank: int
  hidden: int

  @nn.compact
  def __call__(self, point_features: jnp.ndarray) -> jnp.ndarray:
    """[B,K,P] -> [B,K,J,3]."""
    h = jax.nn.gelu(nn.Dense(self.hidden)(point_features))
    basis = nn.Dense(3 * self.rank, kernel_init=nn.initializers.zeros)(h)
    return basis.reshape(*basis.shape[:-1], self.rank, 3)
