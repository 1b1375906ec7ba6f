"""Dual cross-attention: speech features and geometry tokens attend to each other.

The geometry tokens are local in time. Frames are grouped in blocks of
`block` frames; each block keeps its own copy of the tokens, which attend to
the real frames within `token_window` frames of the block. For a sequence no
longer than `token_window` every block sees every frame, which is global
attention exactly (training crops are that short); for minutes of speech the
tokens still summarise the last few seconds, as they did in training, instead
of averaging the whole file. Cost and memory grow linearly with T.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mmtalker_jax.models.temporal import ALiBiSelfAttention


def to_blocks(x: jnp.ndarray, block: int) -> jnp.ndarray:
  """[B,T,...] -> [B,N,block,...], zero-padded to N = ceil(T/block) blocks."""
  b, t = x.shape[:2]
  n = -(-t // block)
  x = jnp.pad(x, [(0, 0), (0, n * block - t)] + [(0, 0)] * (x.ndim - 2))
  return x.reshape(b, n, block, *x.shape[2:])


def block_context(x: jnp.ndarray, mask: jnp.ndarray, block: int,
                  window: int) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The frames each block's tokens attend to.

  Args:
    x: [B,T,D] frames; mask: [B,T] (1 = real).
    block: frames per block; window: frames attended on each side of a block.

  Returns:
    context [B,N,S,D] and its mask [B,N,S] (bool), S = block * (2r + 1),
    r = ceil(window / block): block n sees frames j with
    n*block - window <= j < (n+1)*block + window that are real.
  """
  r = -(-window // block)
  xb = to_blocks(x, block)  # [B,N,w,D]
  mb = to_blocks(mask.astype(bool), block)  # [B,N,w]
  n = xb.shape[1]
  pad = [(0, 0), (r, r), (0, 0)]
  xb = jnp.pad(xb, pad + [(0, 0)])
  mb = jnp.pad(mb, pad)
  ctx = jnp.concatenate([xb[:, o:o + n] for o in range(2 * r + 1)], axis=2)
  ctx_mask = jnp.concatenate([mb[:, o:o + n] for o in range(2 * r + 1)], axis=2)
  offset = np.arange((2 * r + 1) * block) - r * block  # frame position relative to the block
  near = (offset >= -window) & (offset < block + window)
  return ctx, ctx_mask & jnp.asarray(near)


class FusionBlock(nn.Module):
  """One level of fusion.

  The motion stream takes in this level's speech features; frames query their
  block's geometry tokens (audio -> geometry); the tokens query the real frames
  near their block (geometry -> audio); frames attend to each other over time
  (ALiBi); an MLP.

  Attributes:
    num_heads: attention heads.
    window: temporal self-attention reach (frames).
    block: frames per block (temporal attention tiles and token blocks).
    token_window: frames each block's tokens see on either side.
    update_tokens: run geometry -> audio (the last level skips it: nothing
      reads its tokens).
  """
  num_heads: int
  window: int
  block: int
  token_window: int
  update_tokens: bool = True

  @nn.compact
  def __call__(self, motion, speech, tokens, frame_mask):
    """motion, speech: [B,T,D]; tokens: [B,N,G,D] per block; frame_mask: [B,T].

    Returns:
      motion [B,T,D], tokens [B,N,G,D].
    """
    b, t, d = motion.shape
    attend = lambda name: nn.MultiHeadDotProductAttention(self.num_heads, name=name)
    x = motion + nn.Dense(d, name="speech_in")(speech)
    queries = to_blocks(nn.LayerNorm()(x), self.block)  # [B,N,w,D]
    looked = attend("audio_to_geometry")(queries, tokens)
    x = x + looked.reshape(b, -1, d)[:, :t]
    if self.update_tokens:
      ctx, ctx_mask = block_context(nn.LayerNorm()(x), frame_mask, self.block, self.token_window)
      tokens = tokens + attend("geometry_to_audio")(nn.LayerNorm()(tokens), ctx,
                                                    mask=ctx_mask[:, :, None, None, :])
    x = x + ALiBiSelfAttention(self.num_heads, self.window, self.block,
                               name="temporal")(nn.LayerNorm()(x), frame_mask)
    y = nn.Dense(2 * d)(nn.LayerNorm()(x))
    x = x + nn.Dense(d)(nn.gelu(y))
    return x, tokens


class DualCrossAttention(nn.Module):
  """L x [B,T,D] speech levels + [B,G,D] tokens -> motion [B,T,D], tokens [B,N,G,D]."""
  num_heads: int
  window: int
  block: int
  token_window: int

  @nn.compact
  def __call__(self, levels, tokens, frame_mask, initial_motion):
    t = frame_mask.shape[1]
    n = -(-t // self.block)
    tokens = jnp.broadcast_to(tokens[:, None], (tokens.shape[0], n) + tokens.shape[1:])
    motion = initial_motion
    for i, speech in enumerate(levels):
      motion, tokens = FusionBlock(self.num_heads, self.window, self.block, self.token_window,
                                   update_tokens=i < len(levels) - 1,
                                   name=f"level{i}")(motion, speech, tokens, frame_mask)
    return nn.LayerNorm(name="out_norm")(motion), tokens
