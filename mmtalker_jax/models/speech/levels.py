"""A pretrained speech encoder's hidden states as the model's hierarchical audio levels.

  waveform [B,S,1] at 16 kHz --SpeechEncoder--> hidden states at 16000/320 = 50 Hz
  --pick config.model.speech_layers, LayerNorm + Dense(width)--> L x [B,F',D]
  --pool to mesh frames (alignment.py's rule at the encoder's rate)--> L x [B,T,D]

Batch padding never changes a real frame: the encoder is given the sample
mask (see wav2vec2.py). Inputs longer than `window_seconds` (minutes of
speech at evaluation or in predict.py; never a training crop of the shipped
configs) are encoded in windows of that length, one after another under
`nn.scan`, so memory grows with the window, not the file. Consecutive windows
overlap by `overlap_seconds` and are cross-faded there with linear weights
that sum to one, so the features have no seam where windows meet. A
group-norm encoder (the base models) normalises its first layer over the
whole input; windows do the same with statistics gathered over the whole
file in a first pass (cheap: one convolution), so only attention is limited
to the window.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmtalker_jax.alignment import num_feature_frames
from mmtalker_jax.models.audio_encoder import feature_mask, pool_to_frames
from mmtalker_jax.models.speech.wav2vec2 import (SpeechConfig, SpeechEncoder,
                                                 channel_statistics, conv_mask, first_conv)


def receptive_field(config: SpeechConfig) -> int:
  """Samples one encoder frame reads (400 for the released models)."""
  field, step = 1, 1
  for k, s in zip(config.conv_kernel, config.conv_stride):
    field += (k - 1) * step
    step *= s
  return field


def crossfade_weights(num_windows: int, window: int, overlap: int) -> np.ndarray:
  """[num_windows, window] weights: linear ramps over each overlap, summing to one.

  Window k covers frames [k (window - overlap), ... + window).
  """
  w = np.ones((num_windows, window), np.float32)
  ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / max(overlap, 1)
  if overlap:
    w[1:, :overlap] = ramp
    w[:-1, window - overlap:] = 1.0 - ramp
  return w


def fit_length(x: jax.Array, length: int) -> jax.Array:
  """[B,S] zero-padded or cut to `length` samples."""
  s = x.shape[1]
  return jnp.pad(x, ((0, 0), (0, length - s))) if length > s else x[:, :length]


class PretrainedAudio(nn.Module):
  """Waveform [B,S,1] -> `len(layers)` x [B,T,width].

  Attributes:
    speech: the encoder's architecture (from its checkpoint's config.json).
    layers: which hidden states (0 = the first layer's input, num_layers = the
      last layer's output) feed the fusion levels, in order.
    width: D.
    fps, sample_rate: mesh frame rate and waveform rate (S = samples).
    freeze_features: no gradient into the convolutional feature encoder.
    freeze_transformer: no gradient into any of the encoder.
    window_seconds, overlap_seconds: long-input windows (0: never window).
  """
  speech: SpeechConfig
  layers: tuple[int, ...]
  width: int
  fps: float
  sample_rate: float
  freeze_features: bool
  freeze_transformer: bool
  window_seconds: float
  overlap_seconds: float

  def setup(self):
    self.encoder = SpeechEncoder(self.speech, freeze_features=self.freeze_features)
    self.norms = [nn.LayerNorm(name=f"norm{i}") for i in range(len(self.layers))]
    self.projections = [nn.Dense(self.width, name=f"proj{i}") for i in range(len(self.layers))]

  @property
  def rate(self) -> float:
    """Encoder frames per second (50 for the released models at 16 kHz)."""
    return self.sample_rate / self.speech.total_stride

  def levels(self, wave: jax.Array, mask: jax.Array, norm_stats=None) -> jax.Array:
    """[B,S'] samples, [B,S'] mask -> [B,F',L,D], F' = speech.num_frames(S')."""
    states, _ = self.encoder(wave, mask, norm_stats)
    out = []
    for i, layer in enumerate(self.layers):
      h = states[layer]
      if self.freeze_transformer:
        h = jax.lax.stop_gradient(h)
      out.append(self.projections[i](self.norms[i](h)))
    return jnp.stack(out, axis=2)

  def __call__(self, wave: jax.Array, frame_mask: jax.Array) -> list[jax.Array]:
    """wave: [B,S,1]; frame_mask: [B,T] (1 = real frame). Returns L x [B,T,D]."""
    b, num_frames = frame_mask.shape
    wave = wave[..., 0]
    mask = feature_mask(frame_mask, wave.shape[1], self.fps, self.sample_rate)
    wave = wave * mask
    stride, field = self.speech.total_stride, receptive_field(self.speech)
    needed = max(1, num_feature_frames(num_frames, self.fps, self.rate))
    window = int(round(self.window_seconds * self.rate))
    overlap = min(int(round(self.overlap_seconds * self.rate)), window // 2)
    if window <= 0 or needed <= window:
      feats = self._direct(wave, mask, needed, stride, field)
    else:
      feats = self._windowed(wave, mask, needed, window, overlap, stride, field)
    # Encoder frame j is centred near (j + 0.5) / rate s: alignment.py's rule at that rate.
    rate = self.rate
    if rate < self.fps:  # fewer encoder frames than mesh frames: repeat each one
      repeat = math.ceil(self.fps / rate)
      feats, rate = jnp.repeat(feats, repeat, axis=1), rate * repeat
    return [pool_to_frames(feats[:, :, i], num_frames, self.fps, rate)
            for i in range(len(self.layers))]

  def _direct(self, wave, mask, needed, stride, field) -> jax.Array:
    """[B,needed,L,D] from one pass over the whole input."""
    length = (needed - 1) * stride + field
    return self.levels(fit_length(wave, length), fit_length(mask, length))

  def _windowed(self, wave, mask, needed, window, overlap, stride, field) -> jax.Array:
    """[B,needed,L,D] from overlapping windows of `window` frames, cross-faded."""
    hop = window - overlap
    n = 1 + -(-(needed - window) // hop)
    span = (window - 1) * stride + field  # samples per window
    length = (n - 1) * hop * stride + span
    starts = np.arange(n) * hop * stride
    idx = starts[:, None] + np.arange(span)[None]  # [n, span]
    waves = jnp.moveaxis(fit_length(wave, length)[:, idx], 1, 0)  # [n,B,span]
    masks = jnp.moveaxis(fit_length(mask, length)[:, idx], 1, 0)

    stats = None
    if self.speech.feat_extract_norm == "group":
      stats = self._norm_stats(fit_length(wave, length), fit_length(mask, length))

    def body(module, carry, w, m, stats):
      return carry, module.levels(w, m, stats)

    scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=(0, 0, nn.broadcast), out_axes=0, length=n)
    _, per_window = scan(self, None, waves, masks, stats)  # [n,B,window,L,D]
    weights = jnp.asarray(crossfade_weights(n, window, overlap))
    frames = (np.arange(n)[:, None] * hop + np.arange(window)[None]).reshape(-1)
    weighted = per_window * weights[:, None, :, None, None]
    weighted = jnp.moveaxis(weighted, 2, 1).reshape(n * window, *per_window.shape[1:2],
                                                    *per_window.shape[3:])  # [n*window,B,L,D]
    total = jax.ops.segment_sum(weighted, jnp.asarray(frames),
                                num_segments=(n - 1) * hop + window)
    return jnp.moveaxis(total[:needed], 0, 1)

  def _norm_stats(self, wave: jax.Array, mask: jax.Array, chunk: int = 16384):
    """The first GroupNorm's per-channel (mean, var), each [B,1,C], over all of
    `wave` [B,S] (its real samples), `chunk` first-layer frames at a time."""
    c = self.speech
    k, s = c.conv_kernel[0], c.conv_stride[0]
    frames = (wave.shape[1] - k) // s + 1
    n = -(-frames // chunk)
    span = (chunk - 1) * s + k
    length = (n - 1) * chunk * s + span
    idx = (np.arange(n) * chunk * s)[:, None] + np.arange(span)[None]
    waves = jnp.moveaxis(fit_length(wave, length)[:, idx], 1, 0)  # [n,B,span]
    masks = jnp.moveaxis(fit_length(mask, length)[:, idx], 1, 0)
    params = self.encoder.variables["params"]["feature_extractor"]

    def step(carry, x):  # Chan et al.'s pairwise update of (count, mean, sum of squares)
      count, mean, m2 = carry
      y = first_conv(params, c, x[0])
      m = conv_mask(x[1], k, s)
      n_b = m.sum(1)[:, None, None]
      mean_b, var_b = channel_statistics(y, m)
      total = jnp.maximum(count + n_b, 1.0)
      delta = mean_b - mean
      return (count + n_b, mean + delta * n_b / total,
              m2 + var_b * n_b + jnp.square(delta) * count * n_b / total), None

    b, dim = wave.shape[0], c.conv_dim[0]
    zeros = jnp.zeros((b, 1, dim), wave.dtype)
    (count, mean, m2), _ = jax.lax.scan(step, (jnp.zeros((b, 1, 1), wave.dtype), zeros, zeros),
                                        (waves, masks))
    return mean, m2 / jnp.maximum(count, 1.0)
