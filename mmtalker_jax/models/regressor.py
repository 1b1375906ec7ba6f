"""The lightweight regression network: (point, frame) -> 3D displacement."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class Regressor(nn.Module):
  """An MLP on [Fourier(uv), geometric feature, motion feature] per (frame, point).

  The first layer is applied to the point part and the frame part separately
  and broadcast-added, which equals a Dense on their concatenation at a
  fraction of the cost; the rest runs on [B,T,K,H]. The point part does not
  depend on the frame, so inference computes it once (`encode_points`) and
  then runs `decode_frames` over chunks of frames.

  Attributes:
    hidden: H.
    num_layers: hidden layers (>= 1).
    num_heads: heads of the point -> geometry-token cross-attention (0: none).
    activation: a jax.nn function name.
  """
  hidden: int
  num_layers: int
  num_heads: int = 0
  activation: str = "gelu"

  def setup(self):
    self.point_in = nn.Dense(self.hidden)
    if self.num_heads:
      self.point_norm = nn.LayerNorm()
      self.point_to_geometry = nn.MultiHeadDotProductAttention(
          self.num_heads, qkv_features=self.hidden, out_features=self.hidden)
    self.frame_in = nn.Dense(self.hidden)
    self.hidden_layers = [nn.Dense(self.hidden) for _ in range(self.num_layers - 1)]
    self.out = nn.Dense(3, kernel_init=nn.initializers.zeros)

  def encode_points(self, point_code, point_geometry, tokens):
    """point_code: [K,P]; point_geometry: [B,K,D]; tokens: [B,G,D] -> [B,K,H]."""
    b = point_geometry.shape[0]
    point = jnp.concatenate(
        [jnp.broadcast_to(point_code, (b,) + point_code.shape), point_geometry], axis=-1)
    point = self.point_in(point)
    if self.num_heads:
      point = point + self.point_to_geometry(self.point_norm(point), tokens)
    return point

  def decode_frames(self, point, motion):
    """point: [B,K,H] from encode_points; motion: [B,T,D] -> [B,T,K,3] output units."""
    act = getattr(jax.nn, self.activation)
    h = act(point[:, None] + self.frame_in(motion)[:, :, None])  # [B,T,K,H]
    for layer in self.hidden_layers:
      h = act(layer(h))
    return self.out(h)

  def __call__(self, point_code, point_geometry, motion, tokens):
    """[K,P], [B,K,D], [B,T,D], [B,G,D] -> displacements [B,T,K,3] in output units."""
    return self.decode_frames(self.encode_points(point_code, point_geometry, tokens), motion)
