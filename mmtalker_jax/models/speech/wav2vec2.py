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

`SpeechEncoder(...)(wave, mask)` also takes a [B, S] sample mask (1 = real
audio, anywhere in the row: batch padding at the end, window padding at the
start). A frame is real when every sample it reads is; padded frames are left
out of the first GroupNorm's statistics and of every attention, and are zeroed
before the position convolution. The real frames of a padded row then equal
those of the same audio with no padding (transformers' base models, which
take no attention mask, let padding change them).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

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

  @classmethod
  def from_dict(cls, fields: dict) -> "SpeechConfig":
    """From `dataclasses.asdict` output (lists read back as tuples)."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})

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


class MaskedChannelNorm(nn.Module):
  """GroupNorm with a group per channel, statistics over the real frames only.

  [B, T, C], mask [B, T] or None -> [B, T, C]; parameters named as nn.GroupNorm's.
  `stats` = (mean, var), each [B, 1, C], replaces the statistics of `x` (a
  long input encoded in windows normalises every window by the whole input's).
  """
  epsilon: float

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None,
               stats: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,))
    bias = self.param("bias", nn.initializers.zeros, (c,))
    mean, var = stats if stats is not None else channel_statistics(x, mask)
    return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


def channel_statistics(x: jax.Array, mask: jax.Array | None) -> tuple[jax.Array, jax.Array]:
  """Per-channel mean and (biased) variance over the real frames: [B, T, C] -> 2 x [B, 1, C]."""
  m = jnp.ones(x.shape[:2], x.dtype) if mask is None else mask.astype(x.dtype)
  m = m[..., None]
  count = jnp.maximum(m.sum(1, keepdims=True), 1.0)
  mean = (x * m).sum(1, keepdims=True) / count
  return mean, (jnp.square(x - mean) * m).sum(1, keepdims=True) / count


def conv_mask(mask: jax.Array, kernel: int, stride: int) -> jax.Array:
  """[B, S] -> [B, S']: an output frame is real when every input it reads is."""
  return jax.lax.reduce_window(mask, jnp.array(1, mask.dtype), jax.lax.min, (1, kernel),
                               (1, stride), "VALID")


def first_conv(params: dict, config: SpeechConfig, wave: jax.Array) -> jax.Array:
  """The feature encoder's first convolution alone: [B, S] -> [B, S', C] (its
  `feature_extractor` params), for `norm_statistics`."""
  conv = params["conv_layers_0_conv"]
  y = jax.lax.conv_general_dilated(wave[:, :, None], conv["kernel"], (config.conv_stride[0],),
                                   "VALID", dimension_numbers=("NWC", "WIO", "NWC"))
  return y + conv["bias"] if "bias" in conv else y


class FeatureEncoder(nn.Module):
  """[B, S] waveform (and [B, S] mask) -> [B, T', C] features and their [B, T'] mask
  (T' = config.num_frames(S); the mask is None when none was given).

  `norm_stats` (group norm only): the first layer's GroupNorm statistics to
  use instead of this input's (see MaskedChannelNorm).
  """
  config: SpeechConfig

  @nn.compact
  def __call__(self, wave: jax.Array, mask: jax.Array | None = None,
               norm_stats: tuple[jax.Array, jax.Array] | None = None):
    c = self.config
    x = wave[:, :, None]
    for i, (dim, k, s) in enumerate(zip(c.conv_dim, c.conv_kernel, c.conv_stride)):
      layer = f"conv_layers_{i}"
      x = nn.Conv(dim, (k,), (s,), padding="VALID", use_bias=c.conv_bias,
                  name=f"{layer}_conv")(x)
      if mask is not None:
        mask = conv_mask(mask, k, s)
      if c.feat_extract_norm == "layer":
        x = nn.LayerNorm(epsilon=_TORCH_NORM_EPS, name=f"{layer}_layer_norm")(x)
      elif i == 0:  # GroupNorm, a group per channel: each channel over time
        x = MaskedChannelNorm(_TORCH_NORM_EPS, name=f"{layer}_layer_norm")(x, mask, norm_stats)
      x = gelu(x)
    return x, mask


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


def blocked_attention(q: jax.Array, k: jax.Array, v: jax.Array, block: int = 256,
                      key_mask: jax.Array | None = None) -> jax.Array:
  """softmax(q k^T) v over key blocks with a running max and sum (exact up to rounding).

  Never holds the [B, N, T, T] logits: about 2x faster than the one-shot form
  on a CPU at 3000 frames (60 s), and memory linear in T per block.

  Args:
    q, k, v: [B, T, N, D], q already scaled.
    key_mask: [B, T], 1 on keys that may be attended to (default all).
  Returns:
    [B, T, N, D].
  """
  b, t, n, d = k.shape
  pad = -t % block
  blocks = lambda x: jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))).reshape(  # noqa: E731
      b, -1, block, n, d).swapaxes(0, 1)
  if key_mask is None:
    key_mask = jnp.ones((b, t), q.dtype)
  valid = jnp.pad(key_mask > 0, ((0, 0), (0, pad))).reshape(b, -1, block).swapaxes(0, 1)

  def step(carry, x):
    top, total, acc = carry
    kb, vb, ok = x
    logits = jnp.where(ok[:, None, None, :], jnp.einsum("bqnd,bknd->bnqk", q, kb), -jnp.inf)
    new_top = jnp.maximum(top, logits.max(-1))
    # A block of padding only (new_top still -inf) adds nothing.
    safe_top = jnp.where(jnp.isfinite(new_top), new_top, 0.0)
    p = jnp.exp(logits - safe_top[..., None])
    scale = jnp.exp(jnp.where(jnp.isfinite(top), top - safe_top, -jnp.inf))
    return (new_top, total * scale + p.sum(-1),
            acc * scale[..., None] + jnp.einsum("bnqk,bknd->bnqd", p, vb)), None

  tq = q.shape[1]
  init = (jnp.full((b, n, tq), -jnp.inf, q.dtype), jnp.zeros((b, n, tq), q.dtype),
          jnp.zeros((b, n, tq, d), q.dtype))
  (_, total, acc), _ = jax.lax.scan(step, init, (blocks(k), blocks(v), valid))
  return (acc / jnp.maximum(total, 1e-30)[..., None]).transpose(0, 2, 1, 3)


class SelfAttention(nn.Module):
  config: SpeechConfig

  @nn.compact
  def __call__(self, x: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
    c = self.config
    b, t, h = x.shape
    heads = c.num_attention_heads
    split = lambda y: y.reshape(b, t, heads, h // heads)  # noqa: E731
    q = split(nn.Dense(h, name="q_proj")(x)) * (h // heads) ** -0.5
    k = split(nn.Dense(h, name="k_proj")(x))
    v = split(nn.Dense(h, name="v_proj")(x))
    out = blocked_attention(q, k, v, key_mask=key_mask)
    return nn.Dense(h, name="out_proj")(out.reshape(b, t, h))


class EncoderLayer(nn.Module):
  config: SpeechConfig

  @nn.compact
  def __call__(self, x: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
    c = self.config
    norm = lambda name: nn.LayerNorm(epsilon=c.layer_norm_eps, name=name)  # noqa: E731

    def feed_forward(y):
      y = gelu(nn.Dense(c.intermediate_size, name="feed_forward_intermediate_dense")(y))
      return nn.Dense(c.hidden_size, name="feed_forward_output_dense")(y)

    attention = SelfAttention(c, name="attention")
    if c.do_stable_layer_norm:  # pre-LN
      x = x + attention(norm("layer_norm")(x), key_mask)
      return x + feed_forward(norm("final_layer_norm")(x))
    x = norm("layer_norm")(x + attention(x, key_mask))  # post-LN
    return norm("final_layer_norm")(x + feed_forward(x))


class SpeechEncoder(nn.Module):
  """[B, S] normalised 16 kHz waveform -> (num_layers + 1 hidden states, last_hidden_state),
  each [B, T', H], T' = config.num_frames(S).

  Attributes:
    config: the architecture.
    freeze_features: no gradient flows into the feature encoder (as the
      published models fine-tune: the convolutions keep their weights).
  """
  config: SpeechConfig
  freeze_features: bool = False

  @nn.compact
  def __call__(self, wave: jax.Array, mask: jax.Array | None = None,
               norm_stats: tuple[jax.Array, jax.Array] | None = None,
               resample: Callable | None = None
               ) -> tuple[tuple[jax.Array, ...], jax.Array]:
    """wave [B, S]; mask [B, S] (1 = real sample) or None (every sample real);
    norm_stats: see FeatureEncoder; resample: (features [B, T', C], mask [B, T']
    or None) -> the same at another length, applied to the convolutional
    features before the projection (FaceFormer runs the transformer at the
    mesh frame rate that way: models/faceformer_audio.py)."""
    c = self.config
    features, frame_mask = FeatureEncoder(c, name="feature_extractor")(wave, mask, norm_stats)
    if resample is not None:
      features, frame_mask = resample(features, frame_mask)
    if self.freeze_features:
      features = jax.lax.stop_gradient(features)
    if c.feat_proj_layer_norm:
      features = nn.LayerNorm(epsilon=c.layer_norm_eps, name="feature_projection_layer_norm")(
          features)
    x = nn.Dense(c.hidden_size, name="feature_projection_projection")(features)
    if frame_mask is not None:
      x = x * frame_mask[..., None]
    x = x + PositionalConv(c, name="encoder_pos_conv_embed_conv")(x)
    final_norm = nn.LayerNorm(epsilon=c.layer_norm_eps, name="encoder_layer_norm")
    if not c.do_stable_layer_norm:
      x = final_norm(x)
    states = []
    for i in range(c.num_hidden_layers):
      states.append(x)
      x = EncoderLayer(c, name=f"encoder_layers_{i}")(x, frame_mask)
    states.append(x)
    return tuple(states), (final_norm(x) if c.do_stable_layer_norm else x)
