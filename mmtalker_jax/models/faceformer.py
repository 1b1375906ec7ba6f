"""FaceFormer (Fan et al., CVPR 2022), the baseline: speech in, every vertex out, frame by frame.

  audio  -> FaceFormerAudio -> audio_feature_map          [B,T,P,D] states, P per frame
  motion -> vertex_map + style -> periodic positions      [B,T,D] decoder input
  one post-LN transformer decoder layer (4 heads, ReLU feed-forward 2D):
    causal self-attention with a period bias (-slope_h * floor((i - j) / period)),
    cross-attention of frame i to its own P audio states only,
  -> output_map (zero-initialised)                        [B,T,3V] displacement

Frame 0's decoder input is the style vector alone; frame i > 0 reads the
displacement of frame i - 1 through vertex_map. Inference feeds the model its
own outputs (autoregressive): here a `lax.scan` with a key/value cache, so a
frame costs one query against the cache (linear in the length, one compile per
length) and the bias is computed, not read from a table, so any length
decodes. Training either feeds the ground truth shifted by one frame (teacher
forcing) or runs that same scan, as the published training does
(`teacher_forcing`). Dropout (0.1 in the published model) is on when the
caller passes a 'dropout' RNG, as the training step does.

The model speaks the harness's interface (models/registry.py): `encode` runs
the decoder and keeps the [B,T,3V] displacements as its 'motion';
`decode_frames` reads them at any surface points (every vertex is its
vertices), so evaluation, prediction and the loss take the MMTalker paths.
Displacements are in output units (x displacement_scale in data units), both
as the decoder's input and output.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mmtalker_jax.mesh.assets import MeshAssets
from mmtalker_jax.models.faceformer_audio import FaceFormerAudio
from mmtalker_jax.models import key_motion as keys_lib
from mmtalker_jax.models.forward import VERTICES, forward, given_points
from mmtalker_jax.models.points import interpolate
from mmtalker_jax.models.sampler import SurfaceSample
from mmtalker_jax.models.speech.wav2vec2 import SpeechConfig

_NEG = -1e9


def head_slopes(num_heads: int) -> np.ndarray:
  """ALiBi's per-head slopes (Press et al.), [H] float32: 1/4, 1/16, ... for 4 heads."""
  def power_of_2(n):
    start = 2.0 ** (-2.0 ** -(math.log2(n) - 3))
    return [start * start ** i for i in range(n)]
  if math.log2(num_heads).is_integer():
    return np.asarray(power_of_2(num_heads), np.float32)
  closest = 2 ** math.floor(math.log2(num_heads))
  extra = head_slopes(2 * closest)[0::2][:num_heads - closest]
  return np.concatenate([power_of_2(closest), extra]).astype(np.float32)


def period_bias(slopes: jnp.ndarray, queries: jnp.ndarray, keys: jnp.ndarray,
                period: int) -> jnp.ndarray:
  """[H, Q, K] self-attention bias: -slope_h * floor((i - j) / period) for key
  j <= query i, _NEG after it (causal). queries [Q], keys [K]: frame indices."""
  d = queries[:, None] - keys[None, :]
  bias = -slopes[:, None, None] * (jnp.maximum(d, 0) // period).astype(jnp.float32)[None]
  return jnp.where((d >= 0)[None], bias, _NEG)


def periodic_encoding(period: int, width: int) -> np.ndarray:
  """[period, D] sinusoids of positions 0..period-1; frame t takes row t % period."""
  position = np.arange(period, dtype=np.float32)[:, None]
  div = np.exp(np.arange(0, width, 2, dtype=np.float32) * (-math.log(10000.0) / width))
  table = np.zeros((period, width), np.float32)
  table[:, 0::2] = np.sin(position * div)
  table[:, 1::2] = np.cos(position * div)
  return table


class FaceFormer(nn.Module):
  """The network. Returns predictions and an aux dict, never a loss.

  Attributes:
    assets: static mesh assets (V vertices; faces for reading other points),
      or None with `num_vertices` (then only `encode` runs).
    num_styles: speaking styles (training subjects).
    fps, feature_rate: mesh and audio-input rates.
    displacement_scale: data units per output unit.
    width: D (64 for the published VOCASET model, 128 for BIWI).
    num_heads: decoder heads (4).
    period: the positional encoding's and the bias's period in frames (30 / 25).
    dropout: the decoder's dropout rate, on only with a 'dropout' RNG.
    teacher_forcing: training feeds the ground truth (True) or the model's
      own outputs (False, as the published training does).
    audio_encoder, audio_alignment, audio_levels, conv_kernel, speech,
    freeze_feature_encoder, freeze_speech_transformer: the audio side
      (faceformer_audio.py).
  """
  assets: MeshAssets | None
  num_styles: int
  fps: float
  feature_rate: float
  displacement_scale: float
  width: int
  num_heads: int
  period: int
  dropout: float
  teacher_forcing: bool
  audio_encoder: str = "logmel"
  audio_alignment: str = "interpolate"
  audio_levels: int = 1
  conv_kernel: int = 5
  speech: SpeechConfig | None = None
  freeze_feature_encoder: bool = True
  freeze_speech_transformer: bool = False
  num_vertices: int = 0  # V when there are no assets (a published model's predictor)
  # Key motions (models/key_motion.py): 'none', 'oracle' or 'predicted'. They
  # enter every frame's decoder input beside the style vector, and the
  # decoder predicts the difference from their guide.
  key_motion: str = "none"
  key_rank: int = 16
  key_fade_seconds: float = 0.2
  key_gap_seconds: float = 0.5

  # Features a decoded frame holds per point (inference/decoder.py sizes chunks by it).
  point_features = 3

  @property
  def key_inputs(self) -> tuple[str, ...]:
    """The key-motion batch inputs this network reads (models/key_motion.py)."""
    return keys_lib.INPUTS[keys_lib.check_mode(self.key_motion)]

  @property
  def vertex_count(self) -> int:
    return self.assets.num_vertices if self.assets is not None else self.num_vertices

  def setup(self):
    d, v3 = self.width, 3 * self.vertex_count
    if d % self.num_heads or d % 2:
      raise ValueError(f"width {d} must be even and divisible by num_heads {self.num_heads}")
    self.audio = FaceFormerAudio(self.audio_encoder, self.audio_alignment, d, self.audio_levels,
                                 self.conv_kernel, self.fps, self.feature_rate, self.speech,
                                 self.freeze_feature_encoder, self.freeze_speech_transformer,
                                 name="audio_encoder")
    self.audio_feature_map = nn.Dense(d)
    self.vertex_map = nn.Dense(d)
    self.style_embedding = nn.Embed(self.num_styles, d)
    self.self_attention_in = nn.Dense(3 * d)
    self.self_attention_out = nn.Dense(d)
    self.cross_attention_query = nn.Dense(d)
    self.cross_attention_memory = nn.Dense(2 * d)
    self.cross_attention_out = nn.Dense(d)
    self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(epsilon=1e-5) for _ in range(3))
    self.feed_forward_in = nn.Dense(2 * d)
    self.feed_forward_out = nn.Dense(d)
    self.output_map = nn.Dense(v3, kernel_init=nn.initializers.zeros)
    self.drop = nn.Dropout(self.dropout)
    if keys_lib.check_mode(self.key_motion) != "none":
      self.key_in = nn.Dense(d)  # (guide [3V], gaps [2]) per frame
      self.key_gate = keys_lib.GuideGate()
    if self.key_motion == "predicted":
      self.key_acquisition = keys_lib.KeyAcquisition(self.key_rank, d)
      # J displacement fields [J,3V], from zero (an untrained acquisition guides nothing)
      self.key_basis = nn.Dense(v3, use_bias=False, kernel_init=nn.initializers.zeros)

  # --- the decoder -----------------------------------------------------------

  def _heads(self, x: jnp.ndarray) -> jnp.ndarray:
    return x.reshape(*x.shape[:-1], self.num_heads, self.width // self.num_heads)

  def _positions(self, x: jnp.ndarray, frames: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
    """x [B,L,D] + the periodic encoding of frames [L], then dropout."""
    table = jnp.asarray(periodic_encoding(self.period, self.width))
    return self.drop(x + table[frames % self.period][None], deterministic=deterministic)

  def _self_qkv(self, x: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
    """[B,L,D] -> q, k, v, each [B,L,H,dh]."""
    q, k, v = jnp.split(self.self_attention_in(x), 3, axis=-1)
    return self._heads(q), self._heads(k), self._heads(v)

  def _memory(self, heard: jnp.ndarray, mask: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
    """Mapped audio states [B,T,P,D] -> the cross-attention's keys and values [B,T,P,H,dh]."""
    k, v = jnp.split(self.cross_attention_memory(heard), 2, axis=-1)
    return self._heads(k), self._heads(v), mask

  def _layer(self, x, q, k, v, bias, memory, deterministic: bool) -> jnp.ndarray:
    """The decoder layer for queries x [B,L,D] (q [B,L,H,dh]) over self keys and
    values k, v [B,S,H,dh] with bias [H,L,S], and memory ([B,L,P,H,dh] keys and
    values and [B,L,P] mask: each query's own audio states). Returns [B,L,D]."""
    b, l, _ = x.shape
    scale = 1.0 / math.sqrt(self.width // self.num_heads)
    logits = jnp.einsum("blhd,bshd->bhls", q * scale, k) + bias[None]
    weights = self.drop(jax.nn.softmax(logits, axis=-1), deterministic=deterministic)
    attended = jnp.einsum("bhls,bshd->blhd", weights, v).reshape(b, l, self.width)
    x = self.norm1(x + self.drop(self.self_attention_out(attended), deterministic=deterministic))

    mem_k, mem_v, mem_mask = memory
    cq = self._heads(self.cross_attention_query(x)) * scale
    logits = jnp.einsum("blhd,blphd->blhp", cq, mem_k)
    logits = jnp.where(mem_mask[:, :, None, :] > 0, logits, _NEG)
    weights = self.drop(jax.nn.softmax(logits, axis=-1), deterministic=deterministic)
    heard = jnp.einsum("blhp,blphd->blhd", weights, mem_v).reshape(b, l, self.width)
    x = self.norm2(x + self.drop(self.cross_attention_out(heard), deterministic=deterministic))

    hidden = self.drop(nn.relu(self.feed_forward_in(x)), deterministic=deterministic)
    return self.norm3(x + self.drop(self.feed_forward_out(hidden), deterministic=deterministic))

  def _teacher_forced(self, given, previous, memory, deterministic: bool) -> jnp.ndarray:
    """All frames at once from the true previous displacements [B,T,3V] and
    each frame's given input [B,T,D] (style, key motions) -> [B,T,3V]."""
    t = previous.shape[1]
    x = self.vertex_map(previous) + given
    frames = jnp.arange(t)
    x = self._positions(x, frames, deterministic)
    q, k, v = self._self_qkv(x)
    bias = period_bias(jnp.asarray(head_slopes(self.num_heads)), frames, frames, self.period)
    return self.output_map(self._layer(x, q, k, v, bias, memory, deterministic))

  def _autoregressive(self, given, memory, num_frames: int, deterministic: bool) -> jnp.ndarray:
    """Frame by frame from the model's own outputs and each frame's given
    input [B,T,D] -> [B,T,3V] (a scan with a key/value cache)."""
    b, t = given.shape[0], num_frames
    h, dh = self.num_heads, self.width // self.num_heads
    slopes = jnp.asarray(head_slopes(h))
    keys = jnp.arange(t)

    def step(module, carry, xs):
      k_cache, v_cache, previous = carry
      i, frame_input, mem_k, mem_v, mem_mask = xs
      token = jnp.where(i == 0, frame_input, module.vertex_map(previous) + frame_input)
      x = module._positions(token[:, None], i[None], deterministic)
      q, k, v = module._self_qkv(x)
      k_cache = jax.lax.dynamic_update_slice_in_dim(k_cache, k, i, axis=1)
      v_cache = jax.lax.dynamic_update_slice_in_dim(v_cache, v, i, axis=1)
      bias = period_bias(slopes, i[None], keys, module.period)
      y = module._layer(x, q, k_cache, v_cache, bias,
                        (mem_k[:, None], mem_v[:, None], mem_mask[:, None]), deterministic)
      out = module.output_map(y[:, 0])
      return (k_cache, v_cache, out), out

    scan = nn.scan(step, variable_broadcast="params",
                   split_rngs={"params": False, "dropout": True}, in_axes=0, out_axes=0,
                   length=t)
    cache = jnp.zeros((b, t, h, dh), given.dtype)
    first = jnp.zeros((b, 3 * self.vertex_count), given.dtype)
    mem_k, mem_v, mem_mask = (jnp.moveaxis(m, 1, 0) for m in memory)
    _, outs = scan(self, (cache, cache, first),
                   (keys, jnp.moveaxis(given, 1, 0), mem_k, mem_v, mem_mask))
    return jnp.moveaxis(outs, 0, 1)

  # --- the harness's interface ------------------------------------------------

  def encode(self, audio: jnp.ndarray, template: jnp.ndarray, style: jnp.ndarray,
             frame_mask: jnp.ndarray, targets: jnp.ndarray | None = None,
             keys: dict[str, jnp.ndarray] | None = None) -> dict[str, jnp.ndarray]:
    """Decodes the whole sequence.

    Args:
      audio: [B,F,C] the front end's input (log-mel, or the waveform [B,S,1]).
      template: [B,V,3] neutral faces.
      style: [B] int style index.
      frame_mask: [B,T] 1 on real frames; T sets the output length.
      targets: [B,T,V,3] true vertices, or None. With teacher_forcing, given
        targets are the decoder's input (training); otherwise it decodes
        autoregressively.
      keys: the `key_inputs` batch entries (none without key motions).

    Returns:
      {'motion': [B,T,3V] displacements in output units, 'template': [B,V,3]};
      with key motions 'motion' is {'motion': [B,T,3V], and for predicted key
      motions 'coefficients' [B,T,J] and 'key_mask' [B,T]}.
    """
    deterministic = not self.has_rng("dropout")
    keys = keys_lib.given(self.key_motion, keys)
    states, mask = self.audio(audio, frame_mask)
    heard = self.audio_feature_map(states)  # [B,T,P,D]
    memory = self._memory(heard, mask)
    style_vector = self.style_embedding(style)
    b, t = frame_mask.shape
    given = jnp.broadcast_to(style_vector[:, None], (b, t, self.width))
    extra, guide = {}, 0.0
    if self.key_motion != "none":
      guide, key_input, extra = self._key_frames(heard, mask, style_vector, keys)
      given = given + key_input
    if targets is not None and self.teacher_forcing:
      truth = (targets - template[:, None]).reshape(b, t, -1) / self.displacement_scale
      previous = jnp.pad(truth[:, :-1], ((0, 0), (1, 0), (0, 0)))
      motion = self._teacher_forced(given, previous, memory, deterministic)
    else:
      motion = self._autoregressive(given, memory, t, deterministic)
    if self.key_motion != "none":  # the decoder predicts the difference from gate x guide
      return {"motion": {"motion": motion + guide, **extra}, "template": template}
    return {"motion": motion, "template": template}

  def _key_frames(self, heard, mask, style_vector, keys):
    """(guide [B,T,3V] output units, decoder input [B,T,D], extra per-frame
    outputs) of the key motions; heard: the mapped audio states [B,T,P,D]."""
    visemes = keys["key_visemes"]
    b, t = visemes.shape
    fade, gap = self.fps * self.key_fade_seconds, self.fps * self.key_gap_seconds
    extra = {}
    if self.key_motion == "oracle":
      values = keys["key_motion"].reshape(b, t, -1) / self.displacement_scale
      guide, gaps = keys_lib.interpolate_keys(values, visemes, fade, gap)
    else:
      weights = mask[..., None]  # each frame's own audio states, averaged
      audio = (heard * weights).sum(2) / jnp.maximum(weights.sum(2), 1.0)
      coefficients = self.key_acquisition(visemes, audio, style_vector)
      # Completion reads the acquired key motions; only their own loss trains them.
      coeff, gaps = keys_lib.interpolate_keys(jax.lax.stop_gradient(coefficients), visemes,
                                              fade, gap)
      guide = jax.lax.stop_gradient(self.key_basis(coeff))
      extra = {"coefficients": coefficients, "key_mask": (visemes > 0).astype(coeff.dtype)}
    return (self.key_gate(gaps) * guide, self.key_in(jnp.concatenate([guide, gaps], -1)),
            extra)

  def key_predictions(self, points: dict[str, jnp.ndarray], motion: Any
                      ) -> dict[str, tuple[jnp.ndarray, jnp.ndarray]]:
    """{'key_motion': (acquired displacement [B,T,K,3], key-frame mask [B,T])}
    for predicted key motions (the step scores them), else {}."""
    if self.key_motion != "predicted":
      return {}
    pred = self.key_basis(motion["coefficients"])
    b, t = pred.shape[:2]
    pred = interpolate(pred.reshape(b, t, -1, 3), self.assets.faces, points["face_ids"],
                       points["bary"])
    return {"key_motion": (pred * self.displacement_scale, motion["key_mask"])}

  def encode_points(self, encoded: dict[str, jnp.ndarray], face_ids: jnp.ndarray,
                    bary: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """Where to read the displacements: face_ids [K] / [B,K], bary [K,3] / [B,K,3];
    and 'template' [B,K,3], the neutral face there."""
    faces = self.assets.faces
    return {"face_ids": face_ids, "bary": bary,
            "template": interpolate(encoded["template"], faces, face_ids, bary)}

  def decode_frames(self, points: dict[str, jnp.ndarray], motion: Any,
                    frame_mask: jnp.ndarray) -> jnp.ndarray:
    """Displacements [B,Tc,K,3] (data units; zero on padded frames) of motion
    [B,Tc,3V] (with key motions: `encode`'s dict, sliced to Tc)."""
    if self.key_motion != "none":
      motion = motion["motion"]
    b, t = motion.shape[:2]
    per_vertex = motion.reshape(b, t, -1, 3)
    out = interpolate(per_vertex, self.assets.faces, points["face_ids"], points["bary"])
    return out * self.displacement_scale * frame_mask[:, :, None, None]

  def decode(self, encoded: dict[str, jnp.ndarray], face_ids: jnp.ndarray, bary: jnp.ndarray,
             frame_mask: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Displacements [B,T,K,3] at K surface points, and the template there [B,K,3]."""
    points = self.encode_points(encoded, face_ids, bary)
    return self.decode_frames(points, encoded["motion"], frame_mask), points["template"]

  def surface_points(self, points: Any = VERTICES, num_points: int | None = None,
                     sampler: Any = None, rows: int = 0) -> SurfaceSample:
    """Every vertex (VERTICES) or given (face_ids [K], bary [K,3]), weighing 1.

    FaceFormer predicts every vertex; it has no sampling distribution to draw
    from (train it with config.sampler.num_points = 0: the loss at every vertex).
    """
    if points is None:
      raise ValueError("FaceFormer predicts every vertex and draws no points: "
                       "set config.sampler.num_points=0")
    return given_points(self.assets, points)

  def __call__(self, audio: jnp.ndarray, template: jnp.ndarray, style: jnp.ndarray,
               frame_mask: jnp.ndarray, points: Any = VERTICES,
               num_points: int | None = None, sampler: Any = None, rows: int = 0,
               targets: jnp.ndarray | None = None,
               keys: dict[str, jnp.ndarray] | None = None,
               chunk_frames: int = 0) -> tuple[jnp.ndarray, dict]:
    """The forward pass, with MMTalker's signature and outputs (`forward.forward`)."""
    return forward(self, audio, template, style, frame_mask, points, num_points, sampler,
                   rows, targets, keys, chunk_frames)


def build_model(config: ml_collections.ConfigDict, assets: MeshAssets,
                num_styles: int) -> FaceFormer:
  """FaceFormer sized by `config.model` (configs/faceformer_*.py)."""
  m = config.model
  arch = m.get("speech_architecture", None)
  arch = arch.to_dict() if isinstance(arch, ml_collections.ConfigDict) else arch
  return FaceFormer(
      assets=assets, num_styles=num_styles, fps=float(config.data.fps),
      feature_rate=float(config.data.features.feature_rate),
      displacement_scale=float(config.data.displacement_scale), width=int(m.width),
      num_heads=int(m.num_heads), period=int(m.period), dropout=float(m.dropout),
      teacher_forcing=bool(m.teacher_forcing), audio_encoder=m.audio_encoder,
      audio_alignment=m.audio_alignment, audio_levels=int(m.audio_levels),
      conv_kernel=int(m.conv_kernel), speech=SpeechConfig.from_dict(arch) if arch else None,
      freeze_feature_encoder=bool(m.freeze_feature_encoder),
      freeze_speech_transformer=bool(m.freeze_speech_transformer),
      key_motion=str(m.get("key_motion", "none")), key_rank=int(m.get("key_rank", 16)),
      key_fade_seconds=float(m.get("key_fade_seconds", 0.2)),
      key_gap_seconds=float(m.get("key_gap_seconds", 0.5)))


def from_pytorch(path, dataset: str, num_vertices: int, num_subjects: int, **kwargs):
  """A published FaceFormer `.pth` as a predictor, without torch
  (models/faceformer_weights.py: `from_pytorch`)."""
  from mmtalker_jax.models import faceformer_weights  # deferred: it imports this module
  return faceformer_weights.from_pytorch(path, dataset, num_vertices, num_subjects, **kwargs)
