"""MMTalker: speech and a template in, displacements at any surface points out."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mmtalker_jax.mesh.assets import MeshAssets
from mmtalker_jax.models.audio_encoder import AudioEncoder
from mmtalker_jax.models.forward import VERTICES, forward, given_points
from mmtalker_jax.models.fusion import DualCrossAttention
from mmtalker_jax.models.gcn import GeometryPooling, ResidualGCN
from mmtalker_jax.models import key_motion as keys_lib
from mmtalker_jax.models.points import fourier_features, interpolate, interpolate_corners
from mmtalker_jax.models.regressor import Regressor
from mmtalker_jax.models.sampler import (SamplerSettings, SurfaceSample, area_logits,
                                         sample_triangles)
from mmtalker_jax.models.speech.levels import PretrainedAudio
from mmtalker_jax.models.speech.wav2vec2 import SpeechConfig

# The model's batch inputs, in the order `encode` and `__call__` take them.
INPUTS = ("audio", "template", "style", "frame_mask")


class MMTalker(nn.Module):
  """The network. Returns predictions and an aux dict, never a loss.

  Attributes:
    assets: static mesh assets (faces, UVs, graph, areas) of the topology.
    num_styles: speaking styles (training subjects).
    fps, feature_rate: mesh and audio-input rates (a waveform's: its sample rate).
    displacement_scale: metres (or the data's unit) per output unit.
    speech_encoder: 'logmel' (the conv stack of audio_encoder.py, on log-mel
      input) or 'pretrained' (wav2vec 2.0 / HuBERT of architecture `speech`,
      on the waveform: speech/levels.py).
    The rest size the parts; they have no defaults here: `config.model` is
    their one home (see configs/default.py and `build_model`). The speech
    fields default to the log-mel encoder so that checkpoints written before
    they existed still load.
  """
  assets: MeshAssets
  num_styles: int
  fps: float
  feature_rate: float
  displacement_scale: float
  width: int
  audio_levels: int
  conv_kernel: int
  gcn_blocks: int
  geometry_tokens: int
  num_heads: int
  attention_window: int
  attention_block: int
  token_window: int
  regressor_hidden: int
  regressor_layers: int
  regressor_heads: int
  regressor_activation: str
  regressor_rank: int
  uv_frequencies: int
  speech_encoder: str = "logmel"  # config.model.audio_encoder (`build_model`)
  speech: SpeechConfig | None = None
  speech_layers: tuple[int, ...] = ()
  freeze_feature_encoder: bool = True
  freeze_speech_transformer: bool = False
  speech_window_seconds: float = 0.0
  speech_overlap_seconds: float = 0.0
  # Key motions (models/key_motion.py): 'none', 'oracle' or 'predicted'.
  key_motion: str = "none"
  key_rank: int = 16
  key_fade_seconds: float = 0.2
  key_gap_seconds: float = 0.5

  @property
  def point_features(self) -> int:
    """Floats per point a decoded frame holds (inference/decoder.py sizes chunks by it):
    the regressor's hidden layer, and as much again for the key-motion stream."""
    return self.regressor_hidden * (1 if self.key_motion == "none" else 2)

  @property
  def key_inputs(self) -> tuple[str, ...]:
    """The key-motion batch inputs this network reads (models/key_motion.py)."""
    return keys_lib.INPUTS[keys_lib.check_mode(self.key_motion)]

  def setup(self):
    assets = self.assets
    # Area-uniform at temperature 1 (at temperature t: p_area ** (1/t), renormalised).
    self.face_logits = self.param("face_logits", lambda _: jnp.asarray(
        area_logits(assets.face_areas)))  # [F]
    self.audio_encoder = self._audio_encoder()
    self.gcn = ResidualGCN(assets.graph, assets.gcn_scale, assets.vertex_uv, self.width,
                           self.gcn_blocks, self.uv_frequencies)
    self.pool = GeometryPooling(self.geometry_tokens)
    self.style_embedding = nn.Embed(self.num_styles, self.width)
    self.fusion = DualCrossAttention(self.num_heads, self.attention_window, self.attention_block,
                                     self.token_window)
    self.regressor = Regressor(self.regressor_hidden, self.regressor_layers, self.regressor_heads,
                               self.regressor_activation, self.regressor_rank)
    if keys_lib.check_mode(self.key_motion) != "none":
      self.key_in = nn.Dense(self.regressor_hidden)  # (guide [3], gaps [2]) per point and frame
      self.key_gate = keys_lib.GuideGate()
    if self.key_motion == "predicted":
      self.key_acquisition = keys_lib.KeyAcquisition(self.key_rank, self.width)
      self.key_basis = keys_lib.KeyBasis(self.key_rank, self.regressor_hidden)

  def _audio_encoder(self) -> nn.Module:
    if self.speech_encoder == "logmel":
      return AudioEncoder(self.width, self.audio_levels, self.conv_kernel, self.fps,
                          self.feature_rate)
    if self.speech_encoder == "pretrained":
      if self.speech is None or len(self.speech_layers) != self.audio_levels:
        raise ValueError("a pretrained audio encoder needs its architecture and "
                         f"audio_levels={self.audio_levels} speech_layers, got "
                         f"{self.speech_layers}")
      return PretrainedAudio(self.speech, tuple(self.speech_layers), self.width, self.fps,
                             self.feature_rate, self.freeze_feature_encoder,
                             self.freeze_speech_transformer, self.speech_window_seconds,
                             self.speech_overlap_seconds)
    raise ValueError(f"unknown audio_encoder {self.speech_encoder!r} (logmel | pretrained)")

  def encode(self, audio: jnp.ndarray, template: jnp.ndarray, style: jnp.ndarray,
             frame_mask: jnp.ndarray, targets: jnp.ndarray | None = None,
             keys: dict[str, jnp.ndarray] | None = None) -> dict[str, jnp.ndarray]:
    """Everything that does not depend on the query points.

    Args:
      audio: [B,F,C] audio input (F = num_feature_frames(T)): log-mel
        [B,F,n_mels], or the waveform [B,S,1] for a pretrained encoder.
      template: [B,V,3] neutral faces.
      style: [B] int style index.
      frame_mask: [B,T] 1 on real frames; T sets the output length.
      targets: the true vertices in training (models/registry.py); not read.
      keys: the `key_inputs` batch entries (none without key motions).

    Returns:
      {'motion': [B,T,D] per-frame motion, 'tokens': [B,G,D] geometry tokens
       (of the template alone: the points query them, so point features do not
       depend on the audio), 'geometry': [B,V,D] per-vertex features,
       'template': [B,V,3]}. With key motions 'motion' is a dict of per-frame
       arrays (`_key_frames`); decoders slice every leaf along T alike.
    """
    keys = keys_lib.given(self.key_motion, keys)
    levels = self.audio_encoder(audio, frame_mask)
    geometry = self.gcn(template)
    tokens = self.pool(geometry)
    style_code = self.style_embedding(style)
    initial = jnp.broadcast_to(style_code[:, None], levels[0].shape)
    motion, _ = self.fusion(levels, tokens, frame_mask, initial)
    if self.key_motion != "none":
      motion = self._key_frames(motion, style_code, keys)
    return {"motion": motion, "tokens": tokens, "geometry": geometry, "template": template}

  def _key_frames(self, motion: jnp.ndarray, style_code: jnp.ndarray,
                  keys: dict[str, jnp.ndarray]) -> dict[str, jnp.ndarray]:
    """The per-frame arrays of a key-motion network ([B,T,...] each).

    Acquisition hears each frame through the fused motion [B,T,D] (the
    audio after the dual cross-attention: the network's own reading of the
    speech around the frame).

    'motion' [B,T,D]; 'gaps' [B,T,2]; 'gate' [B,T,1] (`GuideGate`); 'guide':
    oracle, the interpolated true key displacements at every vertex
    [B,T,V,3] in output units; predicted,
    the interpolated acquisition coefficients [B,T,J], with 'coefficients'
    [B,T,J] (not interpolated) and 'key_mask' [B,T] for the acquisition loss.
    """
    visemes = keys["key_visemes"]
    fade, gap = self.fps * self.key_fade_seconds, self.fps * self.key_gap_seconds
    if self.key_motion == "oracle":
      values = keys["key_motion"] / self.displacement_scale
      guide, gaps = keys_lib.interpolate_keys(values, visemes, fade, gap)
      return {"motion": motion, "guide": guide, "gaps": gaps, "gate": self.key_gate(gaps)}
    coefficients = self.key_acquisition(visemes, motion, style_code)
    # Completion reads the acquired key motions; only their own loss trains them.
    guide, gaps = keys_lib.interpolate_keys(jax.lax.stop_gradient(coefficients), visemes,
                                            fade, gap)
    return {"motion": motion, "guide": guide, "gaps": gaps, "gate": self.key_gate(gaps),
            "coefficients": coefficients, "key_mask": (visemes > 0).astype(motion.dtype)}

  def encode_points(self, encoded: dict[str, jnp.ndarray], face_ids: jnp.ndarray,
                    bary: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """The frame-independent part of decoding, for K points (face_ids [K], bary [K,3]).

    face_ids [B,K] and bary [B,K,3] give each batch row its own points.

    Returns:
      the regressor's point features ({'hidden': [B,K,H], ...}) and 'template':
      [B,K,3], the neutral face at the points.
    """
    faces = self.assets.faces
    uv = interpolate_corners(self.assets.face_uv, face_ids, bary)  # [(B,)K,2]
    point_geometry = interpolate(encoded["geometry"], faces, face_ids, bary)  # [B,K,D]
    points = self.regressor.encode_points(fourier_features(uv, self.uv_frequencies),
                                          point_geometry, encoded["tokens"])
    if self.key_motion == "oracle":  # to read the vertex guide at the points
      points["face_ids"], points["bary"] = face_ids, bary
    if self.key_motion == "predicted":
      points["key_basis"] = self.key_basis(points["hidden"])  # [B,K,J,3]
    return {**points, "template": interpolate(encoded["template"], faces, face_ids, bary)}

  def decode_frames(self, points: dict[str, jnp.ndarray], motion: Any,
                    frame_mask: jnp.ndarray) -> jnp.ndarray:
    """Displacements [B,Tc,K,3] (zero on padded frames) for motion [B,Tc,D]
    (with key motions, `encode`'s dict of per-frame arrays, sliced to Tc).

    Frames are independent here, so long sequences are decoded in chunks.
    With key motions the regressor also reads the guide and the gaps at each
    point, and predicts the difference from gate x guide.
    """
    if self.key_motion == "none":
      out = self.regressor.decode_frames(points, motion)
    else:
      guide = self._guide_at_points(points, motion["guide"])  # [B,Tc,K,3]
      gaps = jnp.broadcast_to(motion["gaps"][:, :, None], guide.shape[:3] + (2,))
      extra = self.key_in(jnp.concatenate([guide, gaps], -1))
      out = motion["gate"][:, :, None] * guide + self.regressor.decode_frames(
          points, motion["motion"], extra)
    return out * self.displacement_scale * frame_mask[:, :, None, None]

  def _guide_at_points(self, points: dict[str, jnp.ndarray], guide: jnp.ndarray) -> jnp.ndarray:
    """[B,Tc,K,3] the guide (output units) at the points."""
    if self.key_motion == "oracle":  # guide [B,Tc,V,3]
      return interpolate(guide, self.assets.faces, points["face_ids"], points["bary"])
    # guide [B,Tc,J]: completion reads the acquired motion; only its own loss trains it.
    return jax.lax.stop_gradient(jnp.einsum("bkjc,btj->btkc", points["key_basis"], guide))

  def key_predictions(self, points: dict[str, jnp.ndarray], motion: Any
                      ) -> dict[str, tuple[jnp.ndarray, jnp.ndarray]]:
    """Extra supervised outputs: {'key_motion': (acquired displacement [B,T,K,3],
    key-frame mask [B,T])} for predicted key motions (the step scores them
    against the true displacement at key frames), else {}."""
    if self.key_motion != "predicted":
      return {}
    pred = jnp.einsum("bkjc,btj->btkc", points["key_basis"], motion["coefficients"])
    return {"key_motion": (pred * self.displacement_scale, motion["key_mask"])}

  def decode(self, encoded: dict[str, jnp.ndarray], face_ids: jnp.ndarray, bary: jnp.ndarray,
             frame_mask: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Displacements [B,T,K,3] at K surface points, and the template there [B,K,3].

    face_ids [K], bary [K,3]: the same points in every row; [B,K], [B,K,3]: a
    set per row.
    """
    points = self.encode_points(encoded, face_ids, bary)
    return self.decode_frames(points, encoded["motion"], frame_mask), points["template"]

  def sample_points(self, num_points: int, sampler: SamplerSettings,
                    rows: int = 0) -> SurfaceSample:
    """K points from the sampling distribution (uses the 'sample' RNG stream).

    rows = 0: one set of K points ([K] fields); rows = B: an independent set
    for each batch row ([B,K] fields; row r draws from the key folded with r).
    """
    logits, areas = self.face_logits, jnp.asarray(self.assets.face_areas)

    def draw(key):
      return sample_triangles(logits, areas, key, num_points, sampler.temperature,
                              sampler.epsilon, sampler.learned)
    key = self.make_rng("sample")
    if not rows:
      return draw(key)
    return jax.vmap(lambda r: draw(jax.random.fold_in(key, r)))(jnp.arange(rows))

  def surface_points(self, points: Any = VERTICES, num_points: int | None = None,
                     sampler: SamplerSettings | None = None, rows: int = 0) -> SurfaceSample:
    """Where to predict: VERTICES (every vertex), a (face_ids [K], bary [K,3])
    pair, or None to draw `num_points` points with `sampler`'s settings
    (`sample_points`, with its `rows`). Given points weigh 1 and have log p 0."""
    if points is None:
      return self.sample_points(num_points, sampler, rows)
    return given_points(self.assets, points)

  def __call__(self, audio: jnp.ndarray, template: jnp.ndarray, style: jnp.ndarray,
               frame_mask: jnp.ndarray, points: Any = VERTICES,
               num_points: int | None = None, sampler: SamplerSettings | None = None,
               rows: int = 0, targets: jnp.ndarray | None = None,
               keys: dict[str, jnp.ndarray] | None = None,
               chunk_frames: int = 0) -> tuple[jnp.ndarray, dict]:
    """The forward pass: `encode`, the points (`surface_points`), `decode`.

    Training (the sampled-point loss), evaluation and prediction all run
    these same methods; prediction runs `decode` in chunks of frames
    (inference/decoder.py).

    Args:
      audio, template, style, frame_mask: as in `encode`.
      points, num_points, sampler, rows: as in `surface_points`.
      targets: the true vertices in training (models/registry.py); MMTalker
        does not read them.
      keys: the `key_inputs` batch entries.
      chunk_frames: decode that many frames at a time under remat (the
        training step's memory, `config.loss.point_chunk_frames`; 0: all).

    Returns:
      (displacements [B,T,K,3], aux): see `forward.forward`.
    """
    return forward(self, audio, template, style, frame_mask, points, num_points, sampler,
                   rows, targets, keys, chunk_frames)


def build_model(config: ml_collections.ConfigDict, assets: MeshAssets,
                num_styles: int) -> MMTalker:
  """MMTalker sized by `config.model`, with rates and units from `config.data`.

  A pretrained encoder's architecture is config.model.speech_architecture
  (filled in from its checkpoint when training starts: speech/setup.py).
  """
  fields = config.model.to_dict()
  fields.pop("name", None)
  arch = fields.pop("speech_architecture", None)
  fields["speech"] = SpeechConfig.from_dict(arch) if arch else None
  fields["speech_layers"] = tuple(fields.get("speech_layers", ()))
  fields["speech_encoder"] = fields.pop("audio_encoder", "logmel")
  return MMTalker(assets=assets, num_styles=num_styles, fps=float(config.data.fps),
                  feature_rate=float(config.data.features.feature_rate),
                  displacement_scale=float(config.data.displacement_scale), **fields)
