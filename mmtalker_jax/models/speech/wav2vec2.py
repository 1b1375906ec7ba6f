"""wav2vec 2.0 and HuBERT in Flax linen, numerically as transformers computes them.

One architecture covers the released checkpoints:
  feature encoder   7 strided 1-D convolutions on the waveform (320x down: 50 Hz
                    at 16 kHz); "group" norm (base models: a per-channel
                    GroupNorm after the first conv only) or "layer" norm
                    (large-lv60 models: a LayerNorm after every conv)
  projection        LayerNorm (HuBERT: optional) + Linear to the model width
  position          a grouped, weight-normed convolution over time, added once
  transformer       post-LN layers (base models) or pre-LN "stable layer norm"
                    layers (large-lv60), each self-attention + GELU MLP

`SpeechEncoder(...)(wave)` returns (hidden_states, last_hidden_state) as
transformers 5 gives them with `output_hidden_states=True`: the input of every
layer, then the output of the last layer, num_layers + 1 arrays of [B, T', H];
and the model's output. The two differ only in the pre-LN order, where
last_hidden_state is the final LayerNorm of hidden_states[-1] (transformers 4
put that normalised array last in hidden_states). Parameter names follow the
checkpoint's keys (`loading.py` maps them).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SpeechConfig:
  """The fields of a transformers Wav2Vec2Config / HubertConfig that shape the network."""
  conv_dim: Sequence[int] = (512,) * 7
  conv_kernel: Sequence[int] = (10, 3, 3, 3, 3, 2, 2)
  conv_stride: Sequence[int] = (5, 2, 2, 2, 2, 2, 2)
  conv_bias: bool = False
  feat_extract_norm: str = "group"  # "group" | "layer"
  feat_proj_layer_norm: bool = True
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  layer_norm_eps: float = 1e-5
  num_conv_pos_embeddings: int = 128
  num_conv_pos_embedding_groups: int = 16
  do_stable_layer_norm: bool = False

  @property
  def total_stride(self) -> int:
    return math.prod(self.conv_stride)

  def num_frames(self, num_samples: int) -> int:
    """Frames the feature encoder makes of `num_samples` samples."""
    n = num_samples
    for k, s in zip(self.conv_kernel, self.conv_stride):
      n = (n - k) // s + 1
    return n


_TORCH_NORM_EPS = 1e-5  # nn.GroupNorm / nn.LayerNorm inside the feature encoder


def gelu(x):
  return jax.nn.gelu(x, approximate=False)


class FeatureEncoder(nn.Module):
  """[B, S] waveform -> [B, T', C] features (T' = config.num_frames(S))."""
  config: SpeechConfig

  @nn.compact
  def __call__(self, wave: jax.Array) -> jax.Array:
    c = self.config
    x = wave[:, :, None]
    for i, (dim, k, s) in enumerate(zip(c.conv_dim, c.conv_kernel, c.conv_stride)):
      layer = f"conv_layers_{i}"
      x = nn.Conv(dim, (k,), (s,), padding="VALID", use_bias=c.conv_bias,
                  name=f"{layer}_conv")(x)
      if c.feat_extract_norm == "layer":
        x = nn.LayerNorm(epsilon=_TORCH_NORM_EPS, name=f"{layer}_layer_norm")(x)
      elif i == 0:  # GroupNorm with a group per channel: each channel over time
        x = nn.GroupNorm(num_groups=dim, epsilon=_TORCH_NORM_EPS, name=f"{layer}_layer_norm")(x)
      x = gelu(x)
    return x


class PositionalConv(nn.Module):
  """The weight-normed grouped convolution over time; [B, T, H] -> [B, T, H]."""
  config: SpeechConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = self.config
    k, groups, h = c.num_conv_pos_embeddings, c.num_conv_pos_embedding_groups, c.hidden_size
    # weight = g * v / |v|, the norm over every axis but the kernel's (torch's dim=2).
    g = self.param("weight_g", nn.initializers.ones, (k,))
    v = self.param("weight_v", nn.initializers.normal(0.02), (k, h // groups, h))
    bias = self.param("bias", nn.initializers.zeros, (h,))
    kernel = v * (g / jnp.sqrt(jnp.sum(v * v, axis=(1, 2))))[:, None, None]
    y = jax.lax.conv_general_dilated(
        x, kernel.astype(x.dtype), window_strides=(1,), padding=[(k // 2, k // 2)],
        dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=groups) + bias
    if k % 2 == 0:  # "same" padding of an even kernel leaves one frame too many
      y = y[:, :-1]
    return gelu(y)


def blocked_attention(q: jax.Array, k: jax.Array, v: jax.Array, block: int = 256) -> jax.Array:
  """softmax(q k^T) v over key blocks with a running max and sum (exact up to rounding).

  Never holds the [B, N, T, T] logits: about 2x faster than the one-shot form
  on a CPU at 3000 frames (60 s), and memory linear in T per block.

  Args:
    q, k, v: [B, T, N, D], q already scaled.
  Returns:
    [B, T, N, D].
  """
  b, t, n, d = k.shape
  pad = -t % block
  blocks = lambda x: jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))).reshape(  # noqa: E731
      b, -1, block, n, d).swapaxes(0, 1)
  valid = (jnp.arange(t + pad) < t).reshape(-1, block)

  def step(carry, x):
    top, total, acc = carry
    kb, vb, ok = x
    logits = jnp.where(ok, jnp.einsum("bqnd,bknd->bnqk", q, kb), -jnp.inf)
    new_top = jnp.maximum(top, logits.max(-1))
    p = jnp.exp(logits - new_top[..., None])
    scale = jnp.exp(top - new_top)
    return (new_top, total * scale + p.sum(-1),
            acc * scale[..., None] + jnp.einsum("bnqk,bknd->bnqd", p, vb)), None

  tq = q.shape[1]
  init = (jnp.full((b, n, tq), -jnp.inf, q.dtype), jnp.zeros((b, n, tq), q.dtype),
          jnp.zeros((b, n, tq, d), q.dtype))
  (_, total, acc), _ = jax.lax.scan(step, init, (blocks(k), blocks(v), valid))
  return (acc / total[..., None]).transpose(0, 2, 1, 3)


class SelfAttention(nn.Module):
  config: SpeechConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = self.config
    b, t, h = x.shape
    heads = c.num_attention_heads
    split = lambda y: y.reshape(b, t, heads, h // heads)  # noqa: E731
    q = split(nn.Dense(h, name="q_proj")(x)) * (h // heads) ** -0.5
    k = split(nn.Dense(h, name="k_proj")(x))
    v = split(nn.Dense(h, name="v_proj")(x))
    return nn.Dense(h, name="out_proj")(blocked_attention(q, k, v).reshape(b, t, h))


class EncoderLayer(nn.Module):
  config: SpeechConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = self.config
    norm = lambda name: nn.LayerNorm(epsilon=c.layer_norm_eps, name=name)  # noqa: E731

    def feed_forward(y):
      y = gelu(nn.Dense(c.intermediate_size, name="feed_forward_intermediate_dense")(y))
      return nn.Dense(c.hidden_size, name="feed_forward_output_dense")(y)

    attention = SelfAttention(c, name="attention")
    if c.do_stable_layer_norm:  # pre-LN
      x = x + attention(norm("layer_norm")(x))
      return x + feed_forward(norm("final_layer_norm")(x))
    x = norm("layer_norm")(x + attention(x))  # post-LN
    return norm("final_layer_norm")(x + feed_forward(x))


class SpeechEncoder(nn.Module):
  """[B, S] normalised 16 kHz waveform -> (num_layers + 1 hidden states, last_hidden_state),
  each [B, T', H], T' = config.num_frames(S)."""
  config: SpeechConfig

  @nn.compact
  def __call__(self, wave: jax.Array) -> tuple[tuple[jax.Array, ...], jax.Array]:
    c = self.config
    features = FeatureEncoder(c, name="feature_extractor")(wave)
    if c.feat_proj_layer_norm:
      features = nn.LayerNorm(epsilon=c.layer_norm_eps, name="feature_projection_layer_norm")(
          features)
    x = nn.Dense(c.hidden_size, name="feature_projection_projection")(features)
    x = x + PositionalConv(c, name="encoder_pos_conv_embed_conv")(x)
    final_norm = nn.LayerNorm(epsilon=c.layer_norm_eps, name="encoder_layer_norm")
    if not c.do_stable_layer_norm:
      x = final_norm(x)
    states = []
    for i in range(c.num_hidden_layers):
      states.append(x)
      x = EncoderLayer(c, name=f"encoder_layers_{i}")(x)
    states.append(x)
    return tuple(states), (final_norm(x) if c.do_stable_layer_norm else x)
