"""The lightweight regression network: (point, frame) -> 3D displacement."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


class Regressor(nn.Module):
  """An MLP on [Fourier(uv), geometric feature, motion feature] per (frame, point).

  The first layer is applied to the point part and the frame part separately
  and broadcast-added, which equals a Dense on their concatenation at a
  fraction of the cost; the rest runs on [B,T,K,H].

  Attributes:
    hidden: H.
    num_layers: hidden layers (>= 1).
    num_heads: heads of the point -> geometry-token cross-attention (0: none).
  """
  hidden: int
  num_layers: int
  num_heads: int = 0

  @nn.compact
  def __call__(self, point_code, point_geometry, motion, tokens):
    """point_code: [K,P]; point_geometry: [B,K,D]; motion: [B,T,D]; tokens: [B,G,D].

    Returns:
      [B,T,K,3] displacements in output units.
    """
    b = motion.shape[0]
    point = jnp.concatenate(
        [jnp.broadcast_to(point_code, (b,) + point_code.shape), point_geometry], axis=-1)
    point = nn.Dense(self.hidden, name="point_in")(point)  # [B,K,H]
    if self.num_heads:
      point = point + nn.MultiHeadDotProductAttention(
          self.num_heads, qkv_features=self.hidden, out_features=self.hidden,
          name="point_to_geometry")(nn.LayerNorm()(point), tokens)
    frame = nn.Dense(self.hidden, name="frame_in")(motion)  # [B,T,H]
    h = nn.gelu(point[:, None] + frame[:, :, None])  # [B,T,K,H]
    for i in range(self.num_layers - 1):
      h = nn.gelu(nn.Dense(self.hidden, name=f"hidden{i}")(h))
    return nn.Dense(3, name="out", kernel_init=nn.initializers.zeros)(h)
