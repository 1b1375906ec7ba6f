"""Hierarchical speech features at the mesh frame rate."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmtalker_jax.alignment import feature_to_frame


def pool_to_frames(x: jnp.ndarray, num_frames: int, fps: float,
                   feature_rate: float) -> jnp.ndarray:
  """Averages feature frames into the mesh frames that cover them.

  Args:
    x: [B,F,D] features at `feature_rate` Hz.
    num_frames: T.
    fps, feature_rate: rates; any ratio with feature_rate >= fps.

  Returns:
    [B,T,D]: frame t is the mean of the features whose centres fall in
    [t/fps, (t+1)/fps).
  """
  ids = jnp.asarray(feature_to_frame(x.shape[1], fps, feature_rate))
  summed = jax.ops.segment_sum(jnp.moveaxis(x, 1, 0), ids, num_segments=num_frames)
  counts = jax.ops.segment_sum(jnp.ones_like(ids, x.dtype), ids, num_segments=num_frames)
  return jnp.moveaxis(summed / jnp.maximum(counts, 1.0)[:, None, None], 0, 1)


def feature_mask(frame_mask: jnp.ndarray, num_features: int, fps: float,
                 feature_rate: float) -> jnp.ndarray:
  """[B,T] frame mask -> [B,F]: a feature frame is real when its mesh frame is."""
  ids = feature_to_frame(num_features, fps, feature_rate)
  return jnp.take(frame_mask, jnp.asarray(ids), axis=1, mode="clip")


class AudioEncoder(nn.Module):
  """Log-mel [B,F,n_mels] -> `levels` x [B,T,D], one level per residual conv block.

  Block l uses dilation 2^l, so deeper levels see longer spans of speech
  (from phones to syllables); each level is pooled to mesh frames. Every conv
  reads zeros past the last real frame, exactly as past the end of an
  unpadded sequence, so padding a sequence into a longer bucket changes
  nothing in its real frames.

  Attributes:
    width: D.
    levels: L.
    kernel_size: temporal kernel of every conv block (feature frames).
    fps, feature_rate: mesh and feature rates (feature_rate >= fps).
  """
  width: int
  levels: int
  kernel_size: int
  fps: float
  feature_rate: float

  @nn.compact
  def __call__(self, mel: jnp.ndarray, frame_mask: jnp.ndarray) -> list[jnp.ndarray]:
    """mel: [B,F,n_mels]; frame_mask: [B,T] (1 = real frame). Returns L x [B,T,D]."""
    if self.feature_rate < self.fps:
      raise ValueError(f"feature_rate {self.feature_rate} must be >= fps {self.fps}")
    num_frames = frame_mask.shape[1]
    real = feature_mask(frame_mask, mel.shape[1], self.fps, self.feature_rate)[..., None]
    x = nn.gelu(nn.LayerNorm()(nn.Dense(self.width, name="input")(mel)))
    outputs = []
    for level in range(self.levels):
      y = nn.LayerNorm()(x) * real
      y = nn.Conv(self.width, (self.kernel_size,), kernel_dilation=(2 ** level,),
                  padding="SAME", name=f"conv{level}")(y)
      x = x + nn.Dense(self.width, name=f"proj{level}")(nn.gelu(y))
      outputs.append(pool_to_frames(x, num_frames, self.fps, self.feature_rate))
    return outputs
