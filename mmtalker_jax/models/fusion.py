"""Dual cross-attention: speech features and geometry tokens attend to each other."""

from __future__ import annotations

import flax.linen as nn

from mmtalker_jax.models.temporal import ALiBiSelfAttention


class FusionBlock(nn.Module):
  """One level of fusion.

  The motion stream takes in this level's speech features; frames query the
  geometry tokens (audio -> geometry); the tokens query the real frames
  (geometry -> audio); frames attend to each other over time (ALiBi); an MLP.

  Attributes:
    num_heads, window, block: attention settings (see ALiBiSelfAttention).
  """
  num_heads: int
  window: int
  block: int

  @nn.compact
  def __call__(self, motion, speech, tokens, frame_mask):
    """motion, speech: [B,T,D]; tokens: [B,G,D]; frame_mask: [B,T].

    Returns:
      motion [B,T,D], tokens [B,G,D].
    """
    d = motion.shape[-1]
    attend = lambda name: nn.MultiHeadDotProductAttention(self.num_heads, name=name)
    x = motion + nn.Dense(d, name="speech_in")(speech)
    x = x + attend("audio_to_geometry")(nn.LayerNorm()(x), tokens)
    kv_mask = frame_mask.astype(bool)[:, None, None, :]  # [B,1,1,T]
    tokens = tokens + attend("geometry_to_audio")(nn.LayerNorm()(tokens), nn.LayerNorm()(x),
                                                  mask=kv_mask)
    x = x + ALiBiSelfAttention(self.num_heads, self.window, self.block,
                               name="temporal")(nn.LayerNorm()(x), frame_mask)
    y = nn.Dense(2 * d)(nn.LayerNorm()(x))
    x = x + nn.Dense(d)(nn.gelu(y))
    return x, tokens


class DualCrossAttention(nn.Module):
  """L x [B,T,D] speech levels + [B,G,D] tokens -> motion [B,T,D], tokens [B,G,D]."""
  num_heads: int
  window: int
  block: int

  @nn.compact
  def __call__(self, levels, tokens, frame_mask, initial_motion):
    motion = initial_motion
    for i, speech in enumerate(levels):
      motion, tokens = FusionBlock(self.num_heads, self.window, self.block,
                                   name=f"level{i}")(motion, speech, tokens, frame_mask)
    return nn.LayerNorm(name="out_norm")(motion), tokens
