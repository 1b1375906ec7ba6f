"""Temporal self-attention over frames with an ALiBi distance bias, in blocks.

Each head h adds -slope_h * |i - j| to the logit of frame i attending to frame
j, and attends only within `window` frames. Frames are processed in blocks of
`block` frames, each attending to its neighbouring blocks, so memory and time
grow linearly in T: the same weights run at T = 30 and T = 9000. Training
sequences no longer than `window` see exact full attention.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

_NEG = -1e9


def alibi_slopes(num_heads: int) -> np.ndarray:
  """Geometric slopes 2^(-8/H), 2^(-16/H), ... (Press et al.), [H] float32."""
  return (2.0 ** (-8.0 * np.arange(1, num_heads + 1) / num_heads)).astype(np.float32)


class ALiBiSelfAttention(nn.Module):
  """[B,T,D] -> [B,T,D] local bidirectional self-attention with an ALiBi bias.

  Attributes:
    num_heads: H.
    window: maximum |i - j| attended, in frames.
    block: frames per block (a tiling choice; does not change the result).
  """
  num_heads: int
  window: int
  block: int = 64

  @nn.compact
  def __call__(self, x: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """x: [B,T,D]; mask: [B,T] (1 = real frame). Returns [B,T,D]."""
    b, t, d = x.shape
    h = self.num_heads
    dh = d // h
    w = min(self.block, t)
    nb = -(-t // w)
    r = -(-self.window // w)  # neighbour blocks on each side
    pad = nb * w - t
    qkv = nn.DenseGeneral((3, h, dh), name="qkv")(x)  # [B,T,3,H,dh]
    qkv = jnp.pad(qkv, ((0, 0), (0, pad), (0, 0), (0, 0), (0, 0)))
    valid = jnp.pad(mask.astype(bool), ((0, 0), (0, pad)))
    q = qkv[:, :, 0].reshape(b, nb, w, h, dh) / math.sqrt(dh)
    kv = jnp.pad(qkv[:, :, 1:], ((0, 0), (r * w, r * w), (0, 0), (0, 0), (0, 0)))
    kv = kv.reshape(b, nb + 2 * r, w, 2, h, dh)
    kvalid = jnp.pad(valid, ((0, 0), (r * w, r * w))).reshape(b, nb + 2 * r, w)
    span = 2 * r + 1
    # Each query block sees the `span` blocks centred on it: [B,nb,span*w,...].
    kv = jnp.stack([kv[:, o:o + nb] for o in range(span)], axis=2).reshape(b, nb, span * w, 2, h, dh)
    kvalid = jnp.stack([kvalid[:, o:o + nb] for o in range(span)], axis=2).reshape(b, nb, span * w)
    k, v = kv[..., 0, :, :], kv[..., 1, :, :]

    qpos = np.arange(w)[:, None]  # within the query block
    kpos = np.arange(span * w)[None, :] - r * w  # relative to the query block's start
    dist = np.abs(qpos - kpos).astype(np.float32)  # [w, span*w], the same for every block
    bias = -alibi_slopes(h)[:, None, None] * dist[None]  # [H,w,span*w]
    allowed = jnp.asarray(dist <= self.window)[None, None] & kvalid[:, :, None, :]  # [B,nb,w,span*w]

    logits = jnp.einsum("bnqhd,bnkhd->bnhqk", q, k) + bias[None, None]
    logits = jnp.where(allowed[:, :, None], logits, _NEG)
    attn = nn.softmax(logits, axis=-1)
    out = jnp.einsum("bnhqk,bnkhd->bnqhd", attn, v).reshape(b, nb * w, h * dh)[:, :t]
    return nn.Dense(d, name="out")(out)
