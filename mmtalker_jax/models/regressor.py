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

  With `bilinear_rank` J > 0, a second, multiplicative path adds
  sum_j basis_j(point) * coefficient_j(frame): J displacement fields per point
  (from a deeper per-point MLP, computed once per point) mixed by J per-frame
  coefficients. It costs one [T,J] x [J,K*3] matmul, far less than the
  additive path, and holds localized motion (blinks, lip detail) well.

  Attributes:
    hidden: H.
    num_layers: hidden layers (>= 1) of the additive path.
    num_heads: heads of the point -> geometry-token cross-attention (0: none).
    activation: a jax.nn function name.
    bilinear_rank: J (0: no multiplicative path).
  """
  hidden: int
  num_layers: int
  num_heads: int = 0
  activation: str = "gelu"
  bilinear_rank: int = 0

  def setup(self):
    self.point_in = nn.Dense(self.hidden)
    if self.num_heads:
      self.point_norm = nn.LayerNorm()
      self.point_to_geometry = nn.MultiHeadDotProductAttention(
          self.num_heads, qkv_features=self.hidden, out_features=self.hidden)
    self.frame_in = nn.Dense(self.hidden)
    self.hidden_layers = [nn.Dense(self.hidden) for _ in range(self.num_layers - 1)]
    self.out = nn.Dense(3, kernel_init=nn.initializers.zeros)
    if self.bilinear_rank:
      self.basis_hidden = nn.Dense(self.hidden)
      self.basis = nn.Dense(3 * self.bilinear_rank, kernel_init=nn.initializers.zeros)
      self.coefficients = nn.Dense(self.bilinear_rank)

  def encode_points(self, point_code, point_geometry, tokens):
    """point_code: [K,P] (or [B,K,P]); point_geometry: [B,K,D]; tokens: [B,G,D].

    Returns:
      {'hidden': [B,K,H]} and, with bilinear_rank J, {'basis': [B,K,J,3]}.
    """
    code = jnp.broadcast_to(point_code, point_geometry.shape[:2] + point_code.shape[-1:])
    point = jnp.concatenate([code, point_geometry], axis=-1)
    point = self.point_in(point)
    if self.num_heads:
      point = point + self.point_to_geometry(self.point_norm(point), tokens)
    out = {"hidden": point}
    if self.bilinear_rank:
      act = getattr(jax.nn, self.activation)
      basis = self.basis(act(self.basis_hidden(act(point))))
      out["basis"] = basis.reshape(*basis.shape[:-1], self.bilinear_rank, 3)
    return out

  def decode_frames(self, points, motion, extra=None):
    """points: encode_points' output; motion: [B,T,D] -> [B,T,K,3] output units.

    extra: [B,T,K,H] added to the first layer's input (a per-point, per-frame
    stream such as key motions), or None.
    """
    act = getattr(jax.nn, self.activation)
    h = points["hidden"][:, None] + self.frame_in(motion)[:, :, None]  # [B,T,K,H]
    h = act(h if extra is None else h + extra)
    for layer in self.hidden_layers:
      h = act(layer(h))
    out = self.out(h)
    if self.bilinear_rank:
      out = out + jnp.einsum("bkjc,btj->btkc", points["basis"], self.coefficients(motion))
    return out

  def __call__(self, point_code, point_geometry, motion, tokens):
    """[K,P], [B,K,D], [B,T,D], [B,G,D] -> displacements [B,T,K,3] in output units."""
    return self.decode_frames(self.encode_points(point_code, point_geometry, tokens), motion)
